"""Turns .proto files into a C++ library (messages, gRPC services, gMock stubs).

Uses the system protoc and grpc_cpp_plugin; the proto root is the package that
calls the macro, so `import "wake/v1/registry.proto"` works the same for every
language.
"""

load("//bazel:copts.bzl", "GENERATED_COPTS")

def wake_cc_grpc_library(name, src, proto_deps = [], deps = [], visibility = None):
    """Generates `<src>.pb.{h,cc}`, `.grpc.pb.{h,cc}` and `_mock.grpc.pb.h`.

    Creates `name` (messages + services) and `name_mock` (testonly, the
    generated gMock stubs).

    Args:
      name: the cc_library to create.
      src: the .proto file, relative to the calling package (the proto root).
      proto_deps: other .proto files `src` imports (inputs to protoc only).
      deps: the C++ libraries generated from proto_deps.
      visibility: visibility of the cc_library.
    """
    base = src[:-len(".proto")]
    outs = [
        base + ".pb.h",
        base + ".pb.cc",
        base + ".grpc.pb.h",
        base + ".grpc.pb.cc",
        base + "_mock.grpc.pb.h",
    ]
    pkg = native.package_name()
    native.genrule(
        name = name + "_codegen",
        srcs = [src] + proto_deps,
        outs = outs,
        cmd = ("/usr/bin/protoc -I{pkg} --cpp_out=$(RULEDIR) " +
               "--grpc_out=generate_mock_code=true:$(RULEDIR) " +
               "--plugin=protoc-gen-grpc=/usr/bin/grpc_cpp_plugin {pkg}/{src}").format(pkg = pkg, src = src),
        message = "protoc " + src,
    )
    native.cc_library(
        name = name,
        srcs = [base + ".pb.cc", base + ".grpc.pb.cc"],
        hdrs = [base + ".pb.h", base + ".grpc.pb.h"],
        includes = ["."],
        copts = GENERATED_COPTS,
        deps = deps + [
            "//bazel/third_party:grpc",
            "//bazel/third_party:protobuf",
        ],
        visibility = visibility,
    )

    # The generated gMock stub (`MockWakeRegistryStub`), for tests only.
    native.cc_library(
        name = name + "_mock",
        testonly = True,
        hdrs = [base + "_mock.grpc.pb.h"],
        includes = ["."],
        deps = [":" + name, "//bazel/third_party:gmock"],
        visibility = visibility,
    )
