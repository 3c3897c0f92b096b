#!/usr/bin/python3
"""Cross-language client for atoll-deploy, using only names from SPEC.md.

Generates Python stubs from the repo's proto/ (and google.rpc from the
google-proto-files package) with protoc and grpc_python_plugin, then runs a
scenario against a live server and prints one JSON object with what it saw.
Run with Debian's /usr/bin/python3 (python3-grpcio, python3-protobuf).

usage: deployment_client.py --server HOST:PORT --agent NAME --repo DIR --out DIR
"""
import argparse
import json
import os
import subprocess
import sys


def generate_stubs(repo, out):
    os.makedirs(out, exist_ok=True)
    proto_dir = os.path.join(repo, "proto")
    google_dir = os.path.join(repo, "node_modules", "google-proto-files")
    files = [
        "atoll/deployment/v1/agent.proto",
        "atoll/deployment/v1/deployment_service.proto",
    ]
    subprocess.run(
        ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_out={out}",
         "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", *files],
        check=True,
    )
    subprocess.run(
        ["protoc", f"-I{google_dir}", f"--python_out={out}",
         "google/rpc/status.proto", "google/rpc/error_details.proto"],
        check=True,
    )
    sys.path.insert(0, out)


def error_details(err):
    """Decodes the google.rpc.ErrorInfo carried in grpc-status-details-bin."""
    from google.rpc import error_details_pb2, status_pb2

    out = {"code": err.code().name, "message": err.details(), "reason": None, "metadata": {}}
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    out["reason"] = info.reason
                    out["domain"] = info.domain
                    out["metadata"] = dict(info.metadata)
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--agent", required=True)
    parser.add_argument("--repo", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    generate_stubs(args.repo, args.out)
    import grpc
    from atoll.deployment.v1 import agent_pb2, deployment_service_pb2 as pb
    from atoll.deployment.v1 import deployment_service_pb2_grpc as pb_grpc

    def state_name(value):
        return agent_pb2.AgentState.Name(value)

    result = {}
    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.DeploymentServiceStub(channel)
        listed = stub.ListAgents(pb.ListAgentsRequest(), timeout=10)
        result["listed"] = [
            {"name": a.name, "state": state_name(a.state)} for a in listed.agents
        ]
        deployed = stub.Deploy(pb.DeployRequest(name=args.agent), timeout=60).agent
        result["deployed"] = {
            "name": deployed.name,
            "state": state_name(deployed.state),
            "health": agent_pb2.HealthStatus.Name(deployed.health),
            "port": deployed.port,
            "pid": deployed.pid,
        }
        status = stub.GetStatus(pb.GetStatusRequest(name=args.agent), timeout=10).agent
        result["status_state"] = state_name(status.state)
        for label, name in (("unknown", "no-such-agent"), ("hostile", "../etc")):
            try:
                stub.GetStatus(pb.GetStatusRequest(name=name), timeout=10)
                result[label] = {"code": "OK"}
            except grpc.RpcError as err:
                result[label] = error_details(err)
        stopped = stub.Undeploy(pb.UndeployRequest(name=args.agent), timeout=60).agent
        result["undeployed"] = {"state": state_name(stopped.state), "port": stopped.port}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
