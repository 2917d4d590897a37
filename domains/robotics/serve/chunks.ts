/** Conversions between the wire messages and the control loop's types, shared by every transport. */
import type { ActionChunkProto, ObservationProtoInit, PolicyInfoProto } from '../../../src/proto/messages.js';
import { fromTensorProto } from '../../../src/proto/tensor.js';
import { fail } from '../../../src/util/validate.js';
import type { ChunkPolicyInfo, PinnedRows, TimedChunk, TimedObservation } from '../control/types.js';

export function msToNs(ms: number): bigint {
  if (!Number.isFinite(ms) || ms < 0) fail(`time: expected a finite, non-negative number of ms, received ${ms}`);
  return BigInt(Math.round(ms * 1e6));
}

export function observationMessage(obs: TimedObservation, sessionId: string, historyOnly: boolean, resetHistory = false, pinned?: PinnedRows): ObservationProtoInit {
  if (!obs || !(obs.state instanceof Float64Array)) fail('observation: state must be a Float64Array');
  if (!Number.isSafeInteger(obs.seq) || obs.seq < 0) fail(`observation: seq must be a non-negative safe integer, received ${obs.seq}`);
  const msg: ObservationProtoInit = { timestampNs: msToNs(obs.timeMs), seq: obs.seq, state: obs.state, sessionId, historyOnly, resetHistory };
  if (pinned === undefined || pinned.rows.length === 0) return msg;
  if (!Array.isArray(pinned.rows) || !pinned.rows.every((r) => r instanceof Float64Array)) fail('pinned.rows: expected an array of Float64Array rows');
  if (!Number.isInteger(pinned.firstRow)) fail(`pinned.firstRow: expected an integer, received ${pinned.firstRow}`);
  const flat: number[] = [];
  for (const r of pinned.rows) flat.push(...r);
  return { ...msg, pinnedActions: flat, pinnedFirstRow: pinned.firstRow };
}

export function chunkPolicyInfo(info: PolicyInfoProto): ChunkPolicyInfo {
  const action = info.action;
  const obs = info.observation;
  if (!action || action.shape.length !== 2 || !obs || obs.shape.length !== 1) fail('PolicyInfo: missing or malformed observation/action specs');
  if (!(info.controlRateHz > 0)) fail(`PolicyInfo: control_rate_hz must be positive, received ${info.controlRateHz}`);
  return {
    actionDim: action.shape[1]!,
    observationDim: obs.shape[0]!,
    predHorizon: action.shape[0]!,
    actionHorizon: info.actionHorizon,
    currentRow: info.currentRow,
    dtMs: 1000 / info.controlRateHz,
    obsHorizon: info.obsHorizon,
  };
}

/** The error a rejection chunk (ActionChunk.error_code set) stands for. */
export function rejectionError(msg: Pick<ActionChunkProto, 'obsSeq' | 'errorCode' | 'errorMessage'>): Error {
  return new Error(`observation ${msg.obsSeq} rejected by the policy (${msg.errorCode}): ${msg.errorMessage}`);
}

export function timedChunk(msg: ActionChunkProto, info: ChunkPolicyInfo): TimedChunk {
  if (msg.errorCode) throw rejectionError(msg);
  if (!msg.actions) fail(`ActionChunk ${msg.obsSeq}: no actions`);
  const t = fromTensorProto(msg.actions);
  if (t.shape.length !== 2 || t.shape[0] !== info.predHorizon || t.shape[1] !== info.actionDim) {
    fail(`ActionChunk ${msg.obsSeq}: actions shape [${t.shape.join(', ')}], expected [${info.predHorizon}, ${info.actionDim}]`);
  }
  const A = info.actionDim;
  const data = t.data as ArrayLike<number>;
  const actions: Float64Array[] = [];
  for (let r = 0; r < info.predHorizon; r++) {
    const row = new Float64Array(A);
    for (let j = 0; j < A; j++) row[j] = Number(data[r * A + j]);
    actions.push(row);
  }
  return {
    obsSeq: Number(msg.obsSeq),
    startTimeMs: Number(msg.startTimestampNs) / 1e6,
    dtMs: msg.dt * 1000,
    actions,
    latencyMs: msg.inferenceLatencyMs,
  };
}
