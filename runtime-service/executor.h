// Where the runtime runs work that may block (synchronous registry calls).
//
// Domain code never starts threads itself: it posts to an Executor. main()
// wires a ThreadPoolExecutor; tests use a manual executor so they decide when
// an "in flight" call completes, without threads or sleeps.
#pragma once

#include <functional>
#include <memory>

namespace wake::runtime {

class Executor {
 public:
  virtual ~Executor() = default;

  // Runs `task` later, on some thread of the executor. Never runs it inline.
  // Tasks posted after shutdown began are dropped.
  virtual void Post(std::function<void()> task) = 0;
};

using ExecutorPtr = std::unique_ptr<Executor>;

}  // namespace wake::runtime
