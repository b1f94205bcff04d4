"""Calls every method of the example greeter with Python grpcio.

usage: greeter_client.py ADDR PROTO_DIR THIRD_PARTY_DIR
"""

import importlib
import pathlib
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc


def main():
    addr, proto_dir, third_party = sys.argv[1:4]
    out = tempfile.mkdtemp()
    wkt = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{proto_dir}", f"-I{third_party}", f"-I{wkt}", f"--python_out={out}",
            f"--grpc_python_out={out}", "greeter/v1/greeter.proto", "svc/options.proto",
            "buf/validate/validate.proto"]
    if protoc.main(args) != 0:
        sys.exit("grpc_tools.protoc failed")
    sys.path.insert(0, out)
    pb2 = importlib.import_module("greeter.v1.greeter_pb2")
    stubs = importlib.import_module("greeter.v1.greeter_pb2_grpc")
    with grpc.insecure_channel(addr) as channel:
        stub = stubs.GreeterStub(channel)
        print("SayHello       ->", stub.SayHello(pb2.HelloRequest(name="Ada"), timeout=5).message)
        for reply in stub.SayHelloStream(pb2.HelloStreamRequest(name="Bo", count=3), timeout=5):
            print("SayHelloStream ->", reply.message)
        names = iter([pb2.HelloRequest(name=n) for n in ("Cy", "Di", "Ed")])
        print("CollectHellos  ->", stub.CollectHellos(names, timeout=5).message)
        for reply in stub.Chat(iter([pb2.HelloRequest(name=n) for n in ("Fi", "Gu")]), timeout=5):
            print("Chat           ->", reply.message)


if __name__ == "__main__":
    main()
