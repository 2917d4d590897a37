#!/usr/bin/env python3
"""Drive a scoreflow policy server over gRPC from plain Python.

    python3 examples/python/policy_client.py --address 127.0.0.1:50051 [--steps N] [--json]

Needs only Debian's python3-grpcio and python3-protobuf plus protoc (protobuf-compiler). The
message classes are generated at run time from the repository's own proto/*.proto files with
`protoc --python_out`; no gRPC stub generator (grpc_tools) is used: the three RPCs of
scoreflow.v1.PolicyService are called by path with channel.unary_unary / channel.stream_stream
and the generated classes' SerializeToString / FromString.

What it does:

1. Info: prints what the policy expects (state layout, chunk shape, horizons, control rate).
2. A closed loop of --steps chunk requests on one Act stream (one session). Every control step
   sends one Observation; the step that needs a new chunk asks for one, the others carry
   history_only=True. The first action_horizon rows (8 for Push-T) of each chunk are executed,
   one per control step at the policy's control rate (10 Hz) in simulated time; there is no real
   sleeping, so the loop runs as fast as the server answers. Every chunk is checked (dtype,
   shape [pred_horizon, action_dim] = [15, 2], finite values, obs_seq, session_id, dt,
   start_timestamp_ns) and its round trip (observation sent -> chunk received) is timed.
3. Reset on the live session (its history is cleared).
4. Error path: a second Act stream sends a state of the wrong length; the server must reject
   that observation (an ActionChunk with error_code INVALID_ARGUMENT whose message names the
   expected length, no actions) and go on answering the same stream. Then the first session must
   still answer a new chunk request, and is closed cleanly.

THE "ROBOT" IS A STAND-IN, NOT PUSH-T PHYSICS. `StandInRobot` below is a few lines of kinematics
so that the example is self-contained: the agent moves toward the commanded (x, y) position at a
bounded speed, and the T block never moves (nothing pushes it). It only gives the policy
plausible, changing observations; it says nothing about how well the policy pushes a T. Replace
it with your simulator or robot driver.

Exit status: 0 when every check passed; 1 when a check failed or the server misbehaved; 2 for
setup problems (missing package or protoc, bad arguments, server unreachable). With --json the
only output on stdout is one JSON summary line (also on failure, with "ok": false).
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import queue
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid

SERVICE = "/scoreflow.v1.PolicyService"
PROTO_FILES = ("tensor.proto", "robot.proto", "service.proto")
DEFAULT_PROTO_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir, "proto")


class CheckFailed(Exception):
    """A check on the server's behaviour failed (exit 1)."""


class SetupError(Exception):
    """The client cannot run here (exit 2)."""


# --------------------------------------------------------------------------------------------
# Message classes, generated at run time


def load_messages(proto_dir: str, workdir: str):
    """Run protoc on the repository's .proto files and import the generated *_pb2 modules."""
    protoc = shutil.which("protoc")
    if protoc is None:
        raise SetupError("protoc not found on PATH (Debian: apt-get install protobuf-compiler)")
    proto_dir = os.path.normpath(proto_dir)
    missing = [f for f in PROTO_FILES if not os.path.isfile(os.path.join(proto_dir, f))]
    if missing:
        raise SetupError(f"{', '.join(missing)} not found in {proto_dir} (use --proto-dir)")
    cmd = [protoc, f"--python_out={workdir}", "-I", proto_dir, *PROTO_FILES]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SetupError(f"protoc failed ({r.returncode}): {r.stderr.strip()}")
    # The generated modules import each other by bare name (robot_pb2 imports tensor_pb2, ...).
    sys.path.insert(0, workdir)
    try:
        tensor_pb2 = importlib.import_module("tensor_pb2")
        robot_pb2 = importlib.import_module("robot_pb2")
        service_pb2 = importlib.import_module("service_pb2")
    except Exception as e:  # e.g. a protobuf runtime too old for this protoc's output
        raise SetupError(f"cannot import the protoc output: {e}") from e
    return tensor_pb2, robot_pb2, service_pb2


# --------------------------------------------------------------------------------------------
# The stand-in robot


class StandInRobot:
    """Kinematic stand-in, NOT Push-T physics: the agent heads for the commanded position at
    most `max_speed` px/s; the block stays where it was put. State layout is Push-T's:
    [agent_x, agent_y, block_x, block_y, block_angle], positions in [0, 512]."""

    SIZE = 512.0

    def __init__(self, seed: int, max_speed: float = 250.0):
        rng = random.Random(seed)
        self.agent = [float(rng.randrange(50, 450)), float(rng.randrange(50, 450))]
        self.block = [float(rng.randrange(100, 400)), float(rng.randrange(100, 400))]
        self.angle = rng.uniform(0.0, 2.0 * math.pi)
        self.max_speed = max_speed

    def state(self) -> list[float]:
        return [self.agent[0], self.agent[1], self.block[0], self.block[1], self.angle]

    def step(self, target: tuple[float, float], dt: float) -> None:
        tx = min(max(target[0], 0.0), self.SIZE)
        ty = min(max(target[1], 0.0), self.SIZE)
        dx, dy = tx - self.agent[0], ty - self.agent[1]
        dist = math.hypot(dx, dy)
        reach = self.max_speed * dt
        if dist <= reach:
            self.agent = [tx, ty]
        else:
            self.agent = [self.agent[0] + dx * reach / dist, self.agent[1] + dy * reach / dist]


# --------------------------------------------------------------------------------------------
# A bidirectional Act stream with a request queue and a reader thread


class ActStream:
    """One Act call: observations go in through a queue, chunks come out through another."""

    _END = object()

    def __init__(self, channel, robot_pb2, timeout_s: float):
        self._requests: queue.Queue = queue.Queue()
        self._responses: queue.Queue = queue.Queue()
        self.timeout_s = timeout_s
        act = channel.stream_stream(
            f"{SERVICE}/Act",
            request_serializer=robot_pb2.Observation.SerializeToString,
            response_deserializer=robot_pb2.ActionChunk.FromString,
        )
        self.call = act(self._request_iter())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _request_iter(self):
        while True:
            item = self._requests.get()
            if item is self._END:
                return
            yield item

    def _read(self):
        import grpc

        try:
            for chunk in self.call:
                self._responses.put(("chunk", chunk))
            self._responses.put(("end", None))
        except grpc.RpcError as e:
            self._responses.put(("error", e))

    def send(self, obs) -> None:
        self._requests.put(obs)

    def next(self):
        """("chunk", ActionChunk) | ("end", None) | ("error", grpc.RpcError); CheckFailed on timeout."""
        try:
            return self._responses.get(timeout=self.timeout_s)
        except queue.Empty:
            raise CheckFailed(f"no answer from the Act stream within {self.timeout_s:g} s") from None

    def close(self) -> None:
        """Half-close (no more observations); the server then ends the stream."""
        self._requests.put(self._END)

    def cancel(self) -> None:
        self.call.cancel()
        self._requests.put(self._END)  # let the request iterator return


# --------------------------------------------------------------------------------------------
# Checks


def dtype_format(tensor_pb2, dtype: int) -> str:
    if dtype == tensor_pb2.DTYPE_FLOAT32:
        return "f"
    if dtype == tensor_pb2.DTYPE_FLOAT64:
        return "d"
    raise CheckFailed(f"chunk actions: unexpected dtype {tensor_pb2.DType.Name(dtype) if dtype in tensor_pb2.DType.values() else dtype}")


def decode_actions(tensor_pb2, info, chunk, expect_seq: int, expect_ts: int, session_id: str) -> list[list[float]]:
    """Validate one ActionChunk against PolicyInfo and the observation it answers; return rows."""
    rows = int(info.pred_horizon)
    dim = int(info.action.shape[-1])
    t = chunk.actions
    if chunk.obs_seq != expect_seq:
        raise CheckFailed(f"chunk obs_seq {chunk.obs_seq}, expected {expect_seq} (the observation just sent)")
    if chunk.session_id != session_id:
        raise CheckFailed(f"chunk session_id '{chunk.session_id}', expected '{session_id}'")
    if list(t.shape) != [rows, dim]:
        raise CheckFailed(f"chunk actions shape {list(t.shape)}, expected [{rows}, {dim}]")
    if t.dtype != info.action.dtype:
        raise CheckFailed(f"chunk actions dtype {t.dtype}, PolicyInfo says {info.action.dtype}")
    fmt = dtype_format(tensor_pb2, t.dtype)
    size = struct.calcsize(fmt)
    if len(t.data) != rows * dim * size:
        raise CheckFailed(f"chunk actions: {len(t.data)} bytes for shape [{rows}, {dim}] of {size}-byte elements")
    flat = struct.unpack(f"<{rows * dim}{fmt}", t.data)  # little-endian, row-major
    bad = [i for i, v in enumerate(flat) if not math.isfinite(v)]
    if bad:
        raise CheckFailed(f"chunk actions: {len(bad)} non-finite values (first at row {bad[0] // dim})")
    expect_dt = 1.0 / info.control_rate_hz
    if not (chunk.dt > 0 and abs(chunk.dt - expect_dt) <= 1e-6 * expect_dt):
        raise CheckFailed(f"chunk dt {chunk.dt}, expected {expect_dt} (1 / control_rate_hz)")
    # Row current_row corresponds to the observation, so row 0 starts current_row steps earlier.
    expect_start = expect_ts - round(info.current_row * chunk.dt * 1e9)
    if chunk.start_timestamp_ns != expect_start:
        raise CheckFailed(f"chunk start_timestamp_ns {chunk.start_timestamp_ns}, expected {expect_start}")
    if not (math.isfinite(chunk.inference_latency_ms) and chunk.inference_latency_ms >= 0):
        raise CheckFailed(f"chunk inference_latency_ms {chunk.inference_latency_ms}")
    return [list(flat[r * dim:(r + 1) * dim]) for r in range(rows)]


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# --------------------------------------------------------------------------------------------
# The run


class Client:
    def __init__(self, args, log):
        import grpc

        self.grpc = grpc
        self.args = args
        self.log = log
        self.workdir = tempfile.mkdtemp(prefix="scoreflow-pb2-")
        self.tensor_pb2, self.robot_pb2, self.service_pb2 = load_messages(args.proto_dir, self.workdir)
        self.channel = grpc.insecure_channel(args.address)
        try:
            grpc.channel_ready_future(self.channel).result(timeout=args.connect_timeout)
        except grpc.FutureTimeoutError:
            raise SetupError(f"cannot connect to {args.address} within {args.connect_timeout:g} s (is the server running?)") from None
        self.summary: dict = {"ok": False, "address": args.address}

    def close(self):
        self.channel.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- Info ------------------------------------------------------------------------------

    def info(self):
        pb = self.service_pb2
        call = self.channel.unary_unary(f"{SERVICE}/Info", request_serializer=pb.InfoRequest.SerializeToString, response_deserializer=pb.PolicyInfo.FromString)
        info = call(pb.InfoRequest(), timeout=self.args.timeout)
        dn = self.tensor_pb2.DType.Name
        obs, act = info.observation, info.action
        self.log(f"policy {info.policy_id} (model {info.model_version}) for env '{info.env}'")
        self.log(f"  observation '{obs.name}': shape {list(obs.shape)} {dn(obs.dtype)}, elements {list(obs.element_names)}")
        if obs.low:
            self.log(f"    low  {[round(v, 2) for v in obs.low]}\n    high {[round(v, 2) for v in obs.high]}")
        self.log(f"  action '{act.name}': shape {list(act.shape)} {dn(act.dtype)}")
        if act.low:
            self.log(f"    low  {[round(v, 2) for v in act.low]}\n    high {[round(v, 2) for v in act.high]}")
        self.log(
            f"  obs_horizon {info.obs_horizon}, pred_horizon {info.pred_horizon}, action_horizon {info.action_horizon}, "
            f"current_row {info.current_row}, {info.control_rate_hz:g} Hz, {info.sampler} x{info.sampling_steps} steps, "
            f"max {info.max_message_bytes} bytes/message, max {info.max_sessions} sessions"
        )
        # The stand-in robot speaks Push-T's state and action layout.
        if list(obs.shape) != [5] or len(act.shape) != 2 or act.shape[1] != 2:
            raise SetupError(f"this example's stand-in robot needs a Push-T-like policy (state [5], actions [H, 2]); the server has state {list(obs.shape)}, actions {list(act.shape)}")
        if list(act.shape) != [info.pred_horizon, 2]:
            raise CheckFailed(f"PolicyInfo: action shape {list(act.shape)} disagrees with pred_horizon {info.pred_horizon}")
        if not (info.control_rate_hz > 0 and 0 < info.action_horizon and info.current_row + info.action_horizon <= info.pred_horizon):
            raise CheckFailed(f"PolicyInfo: inconsistent horizons or rate ({info.current_row} + {info.action_horizon} rows of {info.pred_horizon}, {info.control_rate_hz} Hz)")
        self.summary.update(policy_id=info.policy_id, model_version=info.model_version, env=info.env)
        return info

    # -- closed loop -------------------------------------------------------------------------

    def observation(self, state, history_only=False):
        self.seq += 1
        self.clock_ns += 0 if self.seq == 1 else self.dt_ns  # one control step per observation
        return self.robot_pb2.Observation(timestamp_ns=self.clock_ns, seq=self.seq, state=state, session_id=self.session_id, history_only=history_only)

    def request_chunk(self, stream, info, state):
        """Send a chunk-requesting observation; wait for its chunk; return (rows, round trip ms)."""
        obs = self.observation(state)
        t0 = time.perf_counter()
        stream.send(obs)
        kind, value = stream.next()
        rtt_ms = (time.perf_counter() - t0) * 1e3
        if kind == "error":
            raise CheckFailed(f"Act stream failed after observation {obs.seq}: {value.code().name}: {value.details()}")
        if kind == "end":
            raise CheckFailed(f"Act stream ended without answering observation {obs.seq}")
        if value.error_code:
            raise CheckFailed(f"observation {obs.seq} was rejected: {value.error_code}: {value.error_message}")
        rows = decode_actions(self.tensor_pb2, info, value, obs.seq, obs.timestamp_ns, self.session_id)
        return rows, rtt_ms, value

    def closed_loop(self, info, stream, robot):
        rtts, infer = [], []
        ta, row0 = int(info.action_horizon), int(info.current_row)
        for k in range(self.args.steps):
            rows, rtt_ms, chunk = self.request_chunk(stream, info, robot.state())
            rtts.append(rtt_ms)
            infer.append(chunk.inference_latency_ms)
            # Receding horizon: execute Ta rows, one per control step; observe after each, but only
            # as history (the next chunk is requested at the start of the next iteration).
            for j in range(ta):
                robot.step(rows[row0 + j], self.dt)
                if j < ta - 1:
                    stream.send(self.observation(robot.state(), history_only=True))
            a = robot.agent
            self.log(f"chunk {k + 1}/{self.args.steps}: obs_seq {chunk.obs_seq}, round trip {rtt_ms:.1f} ms (inference {chunk.inference_latency_ms:.1f} ms), first action ({rows[row0][0]:.1f}, {rows[row0][1]:.1f}), agent now ({a[0]:.1f}, {a[1]:.1f})")
        return rtts, infer

    # -- Reset -------------------------------------------------------------------------------

    def reset(self, info):
        pb = self.service_pb2
        call = self.channel.unary_unary(f"{SERVICE}/Reset", request_serializer=pb.ResetRequest.SerializeToString, response_deserializer=pb.ResetResponse.FromString)
        r = call(pb.ResetRequest(session_id=self.session_id), timeout=self.args.timeout)
        # The session keeps the last obs_horizon observations; all of them are dropped.
        if r.cleared_observations != info.obs_horizon:
            raise CheckFailed(f"Reset cleared {r.cleared_observations} observations, expected obs_horizon = {info.obs_horizon}")
        self.log(f"reset session {self.session_id}: cleared {r.cleared_observations} observations")
        return r.cleared_observations

    # -- error path ----------------------------------------------------------------------------

    def malformed_observation(self, info):
        """A state one element short on a second stream is rejected (a chunk with error_code
        INVALID_ARGUMENT naming the expected length, no actions); that stream goes on and answers
        the next, valid observation."""
        n = int(info.observation.shape[0])
        stream = ActStream(self.channel, self.robot_pb2, self.args.timeout)
        session = f"{self.session_id}-bad"
        try:
            bad = self.robot_pb2.Observation(timestamp_ns=1, seq=1, state=[100.0] * (n - 1), session_id=session)
            stream.send(bad)
            kind, value = stream.next()
            if kind == "error":
                raise CheckFailed(f"a state of length {n - 1} ended the stream ({value.code().name}: {value.details()}) instead of being rejected")
            if kind == "end":
                raise CheckFailed(f"a state of length {n - 1} ended the stream with OK instead of being rejected")
            if value.error_code != "INVALID_ARGUMENT" or value.obs_seq != 1 or value.HasField("actions"):
                raise CheckFailed(f"a state of length {n - 1} gave error_code {value.error_code!r} for obs_seq {value.obs_seq} (actions set: {value.HasField('actions')}), expected an INVALID_ARGUMENT rejection of obs_seq 1")
            if str(n) not in value.error_message:
                raise CheckFailed(f"the rejection does not mention the expected length {n}: {value.error_message!r}")
            self.log(f"malformed observation (state of {n - 1} values) rejected: {value.error_code}: {value.error_message}")
            # The same stream goes on: a valid observation is answered.
            stream.send(self.robot_pb2.Observation(timestamp_ns=2, seq=2, state=[100.0] * n, session_id=session))
            kind, after = stream.next()
            if kind != "chunk" or after.error_code or after.obs_seq != 2:
                raise CheckFailed(f"after the rejection the stream did not answer observation 2 with a chunk ({kind}: {after!r})")
            stream.close()
            kind, _ = stream.next()
            if kind != "end":
                raise CheckFailed(f"the stream did not end cleanly after the rejection ({kind})")
        except BaseException:
            stream.cancel()
            raise
        return {"code": value.error_code, "message": value.error_message}

    # -- all of it -------------------------------------------------------------------------------

    def run(self):
        info = self.info()
        self.dt = 1.0 / info.control_rate_hz
        self.dt_ns = round(self.dt * 1e9)
        self.seq = 0
        self.clock_ns = 1_000_000_000  # simulated monotonic clock
        self.session_id = f"py-{uuid.uuid4().hex[:12]}"
        robot = StandInRobot(self.args.seed)
        stream = ActStream(self.channel, self.robot_pb2, self.args.timeout)
        try:
            rtts, infer = self.closed_loop(info, stream, robot)
            self.summary.update(
                chunks=len(rtts),
                chunk_shape=[int(info.pred_horizon), int(info.action.shape[1])],
                observations=self.seq,
                round_trip_p50_ms=round(percentile(rtts, 50), 3),
                round_trip_p99_ms=round(percentile(rtts, 99), 3),
                round_trip_max_ms=round(max(rtts), 3) if rtts else None,
                inference_p50_ms=round(percentile(infer, 50), 3),
            )
            self.summary["reset_cleared"] = self.reset(info)
            self.summary["error_check"] = {"passed": False}
            self.summary["error_check"] = dict(passed=True, **self.malformed_observation(info))
            # The first session must not have been affected: it still answers, then ends cleanly.
            _, rtt_ms, _ = self.request_chunk(stream, info, robot.state())
            stream.close()
            kind, value = stream.next()
            if kind == "chunk":
                raise CheckFailed(f"unexpected extra chunk (obs_seq {value.obs_seq}) after the last request")
            if kind == "error":
                raise CheckFailed(f"the first session ended with {value.code().name}: {value.details()} after closing it")
            self.summary["session_after_error"] = "ok"
            self.log(f"first session after the error: chunk in {rtt_ms:.1f} ms, closed cleanly")
        except BaseException:
            stream.cancel()
            raise
        self.summary["ok"] = True
        return self.summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Closed-loop gRPC client for `scoreflow robot serve` (stand-in robot, not Push-T physics).")
    p.add_argument("--address", required=True, help="HOST:PORT of the policy server")
    p.add_argument("--steps", type=int, default=10, help="chunk requests in the closed loop (default 10)")
    p.add_argument("--json", action="store_true", help="print only one JSON summary line on stdout")
    p.add_argument("--seed", type=int, default=0, help="initial state of the stand-in robot (default 0)")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for any one answer (default 30)")
    p.add_argument("--connect-timeout", type=float, default=10.0, help="seconds to wait for the connection (default 10)")
    p.add_argument("--proto-dir", default=DEFAULT_PROTO_DIR, help="directory with tensor.proto, robot.proto, service.proto (default: the repository's proto/)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")

    def log(msg: str) -> None:
        if not args.json:
            print(msg, flush=True)

    summary: dict = {"ok": False, "address": args.address}
    status = 0
    client = None
    try:
        try:
            import grpc  # noqa: F401
        except ImportError:
            raise SetupError(f"cannot import grpc in {sys.executable} (Debian: apt-get install python3-grpcio; run with /usr/bin/python3)") from None
        try:
            import google.protobuf  # noqa: F401
        except ImportError:
            raise SetupError(f"cannot import google.protobuf in {sys.executable} (Debian: apt-get install python3-protobuf; run with /usr/bin/python3)") from None
        client = Client(args, log)
        summary = client.summary
        client.run()
        log("all checks passed")
    except SetupError as e:
        status, summary["error"] = 2, str(e)
    except CheckFailed as e:
        status, summary["error"] = 1, str(e)
    except Exception as e:  # grpc.RpcError from Info/Reset, ...
        if hasattr(e, "code") and callable(e.code):
            msg = f"{e.code().name}: {e.details()}"
        else:
            msg = f"{type(e).__name__}: {e}"
        status, summary["error"] = 1, msg
    finally:
        if client is not None:
            client.close()
    if status != 0:
        print(f"policy_client: FAILED: {summary['error']}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(summary), flush=True)
    elif status == 0:
        s = summary
        print(f"{s['chunks']} chunks, round trip p50 {s['round_trip_p50_ms']:.1f} ms, p99 {s['round_trip_p99_ms']:.1f} ms")
    return status


if __name__ == "__main__":
    sys.exit(main())
