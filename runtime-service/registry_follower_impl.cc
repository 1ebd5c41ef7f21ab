#include "runtime-service/registry_follower_impl.h"

#include <memory>
#include <utility>

#include "common/logging.h"
#include "common/status_util.h"

namespace wake::runtime {

RegistryFollowerImpl::RegistryFollowerImpl(v1::WakeRegistry::StubInterface& registry,
                                           TriggerSink& triggers, common::TimeSource& time,
                                           FollowerOptions options)
    : registry_(registry),
      triggers_(triggers),
      options_(std::move(options)),
      backoff_(options_.retry_initial, options_.retry_max),
      wait_timer_(time.CreateTimer([this] {
        absl::MutexLock lock(&mu_);
        woken_ = true;
      })) {}

RegistryFollowerImpl::~RegistryFollowerImpl() { wait_timer_->Disable(); }

void RegistryFollowerImpl::Run() {
  for (;;) {
    const absl::Duration delay = RunOnce();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (delay <= absl::ZeroDuration()) continue;
    woken_ = false;
    wait_timer_->Enable(delay);
    auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_ || stopping_; };
    mu_.Await(absl::Condition(&wake));
    if (stopping_) return;
  }
}

void RegistryFollowerImpl::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

FollowerStatus RegistryFollowerImpl::Status() {
  absl::MutexLock lock(&mu_);
  return status_;
}

void RegistryFollowerImpl::SetUpToDate(bool up_to_date) {
  {
    absl::MutexLock lock(&mu_);
    if (status_.up_to_date == up_to_date) return;
    status_.up_to_date = up_to_date;
  }
  common::LogInfo(up_to_date ? "registry_up_to_date" : "registry_not_up_to_date");
  if (options_.on_up_to_date_changed) options_.on_up_to_date_changed(up_to_date);
}

absl::Duration RegistryFollowerImpl::RunOnce() {
  auto context = std::make_unique<grpc::ClientContext>();
  v1::SubscribeChangesRequest request;
  request.set_all_tenants(true);
  request.add_kinds(v1::ChangeEvent::WAKE);
  request.add_kinds(v1::ChangeEvent::CONTROL);
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return absl::ZeroDuration();
    context_ = context.get();
    if (subscribed_before_) ++status_.reconnects;
    subscribed_before_ = true;
    request.set_from_offset(status_.offset);
  }
  common::LogInfo("registry_subscribe", {{"from_offset", request.from_offset()}});
  std::unique_ptr<grpc::ClientReaderInterface<v1::ChangeEvent>> reader =
      registry_.SubscribeChanges(context.get(), request);

  bool refetch = false;
  v1::ChangeEvent event;
  while (reader->Read(&event)) {
    {
      absl::MutexLock lock(&mu_);
      ++status_.events_received;
    }
    if (event.has_wake()) {
      triggers_.Trigger(event.wake().tenant_id(), event.wake().stream(), event.wake().wake_id());
    } else if (event.has_control() && event.control() == v1::MUST_REFETCH) {
      refetch = true;
      break;
    }
    // The offset is recorded only once the event is handled: a reconnect
    // resumes after it, never skipping one not yet turned into a trigger.
    {
      absl::MutexLock lock(&mu_);
      if (!event.offset().empty()) status_.offset = event.offset();
      if (event.has_control() && event.control() == v1::UP_TO_DATE) backoff_.Reset();
    }
    if (event.has_control() && event.control() == v1::UP_TO_DATE) SetUpToDate(true);
  }
  if (refetch) context->TryCancel();
  const grpc::Status status = reader->Finish();
  absl::Duration delay;
  std::string why;
  {
    absl::MutexLock lock(&mu_);
    context_ = nullptr;
    if (refetch) {
      status_.offset = "-1";
      delay = absl::ZeroDuration();
    } else {
      status_.last_error = status.ok() ? "registry closed the change stream"
                                       : common::FromGrpcStatus(status).ToString();
      delay = stopping_ ? absl::ZeroDuration() : backoff_.Next();
      why = status_.last_error;
    }
  }
  SetUpToDate(false);
  if (refetch) {
    common::LogWarn("registry_must_refetch", {{"resubscribe_from", "-1"}});
  } else {
    common::LogWarn("registry_stream_ended",
                    {{"error", why}, {"retry_in", absl::FormatDuration(delay)}});
  }
  return delay;
}

}  // namespace wake::runtime
