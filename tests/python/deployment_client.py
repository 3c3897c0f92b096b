#!/usr/bin/python3
"""Cross-language client for atoll-deploy, using only names from SPEC.md.

Generates Python stubs from the repo's proto/ (google.rpc from the
google-proto-files package, grpc.health.v1 and grpc.reflection.v1 from the
npm packages that ship them) with protoc and grpc_python_plugin, then runs a
scenario calling every RPC against a live server, and prints one JSON object
with what it saw. Run with Debian's /usr/bin/python3 (python3-grpcio,
python3-protobuf).

usage: deployment_client.py --server HOST:PORT --agent NAME --repo DIR --out DIR
       deployment_client.py --server HOST:PORT --repo DIR --out DIR --watch-restart
         (prints {"ready": REVISION} once watching, then follows the watch through a
         restart of the server and prints what it saw after it)
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
    # Health and reflection: compiled under module names of our own, since a generated
    # grpc/reflection/... package would be shadowed by grpcio's own `grpc` package (the wire
    # names stay grpc.health.v1 and grpc.reflection.v1).
    extra = os.path.join(out, "_protos")
    for source, module in (
        ("grpc-health-check/proto/health/v1/health.proto", "atoll_py_health.proto"),
        ("@grpc/reflection/build/proto/grpc/reflection/v1/reflection.proto",
         "atoll_py_reflection.proto"),
    ):
        os.makedirs(extra, exist_ok=True)
        with open(os.path.join(repo, "node_modules", source)) as src:
            text = src.read()
        with open(os.path.join(extra, module), "w") as dst:
            dst.write(text)
        subprocess.run(
            ["protoc", f"-I{extra}", f"--python_out={out}", f"--grpc_out={out}",
             "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin", module],
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
    parser.add_argument("--agent")
    parser.add_argument("--repo", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--watch-restart", action="store_true")
    args = parser.parse_args()

    generate_stubs(args.repo, args.out)
    if args.watch_restart:
        watch_through_server_restart(args.server)
        return
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
        restarted = stub.Restart(pb.RestartRequest(name=args.agent), timeout=60).agent
        result["restarted"] = {
            "state": state_name(restarted.state),
            "new_pid": restarted.pid != deployed.pid and restarted.pid > 0,
            "port": restarted.port,
        }
        logs = stub.StreamLogs(
            pb.StreamLogsRequest(name=args.agent, tail_lines=20, follow=False), timeout=10)
        result["log_lines"] = sum(len(batch.lines) for batch in logs)
        result["watch"] = watch_through_crash(
            stub, pb, args.agent, restarted.pid, state_name, agent_pb2.AGENT_STATE_RUNNING)
        stopped = stub.Undeploy(pb.UndeployRequest(name=args.agent), timeout=60).agent
        result["undeployed"] = {"state": state_name(stopped.state), "port": stopped.port}
        result["packages"] = install_and_remove(stub, pb, agent_pb2, state_name, grpc)
        result["health"] = check_health(channel)
        result["reflection"] = reflect(channel)
    print(json.dumps(result))


def install_and_remove(stub, pb, agent_pb2, state_name, grpc):
    """InstallAgent (client streaming: a header, then chunks), a hostile archive, RemoveAgent."""
    import hashlib
    import io
    import tarfile

    def archive(files):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    def install(data):
        def requests():
            header = pb.InstallAgentHeader(
                sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
            yield pb.InstallAgentRequest(header=header)
            for at in range(0, len(data), 4096):
                yield pb.InstallAgentRequest(chunk=data[at:at + 4096])
        return stub.InstallAgent(requests(), timeout=60)

    good = archive([
        ("py-installed/agent.toml", b'[llm]\nmodel = "echo"\n'),
        ("py-installed/data.bin", os.urandom(20000)),
    ])
    response = install(good)
    out = {
        "outcome": pb.InstallOutcome.Name(response.outcome),
        "name": response.agent.name,
        "source": agent_pb2.AgentSource.Name(response.agent.source),
        "sha256_matches": response.agent.installed_package.sha256 == hashlib.sha256(good).hexdigest(),
        "again": pb.InstallOutcome.Name(install(good).outcome),
    }
    try:
        install(archive([("evil/agent.toml", b""), ("evil/../../escaped", b"x")]))
        out["hostile"] = {"code": "OK"}
    except grpc.RpcError as err:
        out["hostile"] = error_details(err)
    removed = stub.RemoveAgent(pb.RemoveAgentRequest(name="py-installed"), timeout=60).agent
    out["removed"] = state_name(removed.state)
    return out


def watch_through_server_restart(server):
    """Holds a WatchHealth stream while the server restarts, and resumes it as SPEC §6 says."""
    import grpc
    from atoll.deployment.v1 import deployment_service_pb2 as pb
    from atoll.deployment.v1 import deployment_service_pb2_grpc as pb_grpc

    result = {"errors": [], "after_restart": []}
    last = 0
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.DeploymentServiceStub(channel)
        try:
            for event in stub.WatchHealth(pb.WatchHealthRequest(), timeout=120):
                last = max(last, event.revision)
                if event.type == pb.WATCH_EVENT_TYPE_SNAPSHOT_COMPLETE:
                    result["first_revision"] = event.revision
                    print(json.dumps({"ready": event.revision}), flush=True)
        except grpc.RpcError as err:
            result["errors"].append(err.code().name)
        # Resume after the last revision seen; the restarted server cannot replay another
        # run's history, so it must answer with a fresh snapshot.
        result["resumed_after"] = last
        events = stub.WatchHealth(
            pb.WatchHealthRequest(resume_after_revision=last), timeout=60, wait_for_ready=True)
        for event in events:
            result["after_restart"].append(pb.WatchEventType.Name(event.type))
            if event.type == pb.WATCH_EVENT_TYPE_SNAPSHOT_COMPLETE:
                result["revision_after"] = event.revision
                break
        events.cancel()
    print(json.dumps(result), flush=True)


def watch_through_crash(stub, pb, agent, pid, state_name, running):
    """Watches one agent, kills its process, and follows it back to RUNNING."""
    import signal

    seen = {"snapshot": 0, "complete": False, "states": [], "revisions_increase": True}
    last_revision = 0
    events = stub.WatchHealth(pb.WatchHealthRequest(names=[agent]), timeout=60)
    for event in events:
        kind = pb.WatchEventType.Name(event.type)
        if kind == "WATCH_EVENT_TYPE_SNAPSHOT":
            seen["snapshot"] += 1
        elif kind == "WATCH_EVENT_TYPE_SNAPSHOT_COMPLETE":
            seen["complete"] = True
            last_revision = event.revision
            os.kill(pid, signal.SIGKILL)  # the agent this scenario deployed
        elif kind == "WATCH_EVENT_TYPE_CHANGE":
            if event.revision <= last_revision:
                seen["revisions_increase"] = False
            last_revision = event.revision
            seen["states"].append(
                [state_name(event.previous_state), state_name(event.agent.state)])
            if event.agent.state == running and event.agent.pid not in (0, pid):
                break
    events.cancel()
    return seen


def check_health(channel):
    import atoll_py_health_pb2 as health_pb2
    import atoll_py_health_pb2_grpc as health_grpc

    stub = health_grpc.HealthStub(channel)
    overall = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    api = stub.Check(
        health_pb2.HealthCheckRequest(service="atoll.deployment.v1.DeploymentService"), timeout=10)
    return [health_pb2.HealthCheckResponse.ServingStatus.Name(r.status) for r in (overall, api)]


def reflect(channel):
    """Lists services and resolves DeploymentService's methods by server reflection v1."""
    import atoll_py_reflection_pb2 as rpb
    import atoll_py_reflection_pb2_grpc as rgrpc
    from google.protobuf import descriptor_pb2

    stub = rgrpc.ServerReflectionStub(channel)
    requests = [
        rpb.ServerReflectionRequest(list_services=""),
        rpb.ServerReflectionRequest(
            file_containing_symbol="atoll.deployment.v1.DeploymentService"),
    ]
    services, methods = [], []
    for response in stub.ServerReflectionInfo(iter(requests), timeout=10):
        if response.HasField("list_services_response"):
            services = sorted(s.name for s in response.list_services_response.service)
        elif response.HasField("file_descriptor_response"):
            for raw in response.file_descriptor_response.file_descriptor_proto:
                fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
                for service in fd.service:
                    if service.name == "DeploymentService":
                        methods = [m.name for m in service.method]
    return {"services": services, "methods": methods}


if __name__ == "__main__":
    main()
