/**
 * TypeScript shapes of the messages in `proto/*.proto`, as the registry's `encode` accepts them
 * (`...Init`: every field optional) and as `decode` returns them (every field present).
 *
 * Conventions (fixed by the registry, see registry.ts):
 * - field names are lowerCamelCase (protobufjs `keepCase: false`): `timestamp_ns` is `timestampNs`;
 * - 64-bit integers are `bigint` when decoded, and accept `bigint` or a safe-integer `number` (or a
 *   decimal string) when encoding;
 * - enums decode to their value name (`'DTYPE_FLOAT32'`), or to the number when this build does
 *   not know the value; encoding accepts either;
 * - `bytes` decode to a plain `Uint8Array` (never a Node Buffer) that is a view into the buffer
 *   passed to `decode`: copy it before reusing that buffer;
 * - unset singular message fields decode to `null`; unset proto3 `optional` fields are absent.
 *
 * Keep these in sync with the .proto files; test/io/proto.test.ts checks that every field of every
 * listed type is covered.
 */

/** A 64-bit integer as accepted by `encode`: bigint, safe-integer number or decimal string. */
export type Int64Init = bigint | number | string;

/** A repeated numeric field as accepted by `encode`: an array or a numeric typed array. */
export type NumberList =
  | readonly number[]
  | Float64Array
  | Float32Array
  | Int32Array
  | Uint32Array
  | Int16Array
  | Uint16Array
  | Int8Array
  | Uint8Array;

export type DTypeName =
  | 'DTYPE_UNSPECIFIED'
  | 'DTYPE_FLOAT32'
  | 'DTYPE_FLOAT64'
  | 'DTYPE_INT32'
  | 'DTYPE_UINT8'
  | 'DTYPE_INT64'
  | 'DTYPE_INT8'
  | 'DTYPE_INT16'
  | 'DTYPE_UINT16'
  | 'DTYPE_UINT32'
  | 'DTYPE_BOOL';

/** scoreflow.v1.Tensor */
export interface TensorProtoInit {
  dtype?: DTypeName | number;
  shape?: NumberList;
  data?: Uint8Array;
  name?: string;
}
export interface TensorProto {
  dtype: DTypeName | number;
  shape: number[];
  data: Uint8Array;
  name: string;
}

/** scoreflow.v1.Observation */
export interface ObservationProtoInit {
  timestampNs?: Int64Init;
  seq?: Int64Init;
  state?: NumberList;
  tensors?: Record<string, TensorProtoInit>;
  sessionId?: string;
  historyOnly?: boolean;
  resetHistory?: boolean;
  pinnedActions?: NumberList;
  pinnedFirstRow?: number;
}
export interface ObservationProto {
  timestampNs: bigint;
  seq: bigint;
  state: number[];
  tensors: Record<string, TensorProto>;
  sessionId: string;
  historyOnly: boolean;
  resetHistory: boolean;
  pinnedActions: number[];
  pinnedFirstRow: number;
}

/** scoreflow.v1.ActionChunk */
export interface ActionChunkProtoInit {
  startTimestampNs?: Int64Init;
  dt?: number;
  actions?: TensorProtoInit;
  obsSeq?: Int64Init;
  policyId?: string;
  inferenceLatencyMs?: number;
  sessionId?: string;
  errorCode?: string;
  errorMessage?: string;
}
export interface ActionChunkProto {
  startTimestampNs: bigint;
  dt: number;
  /** null when the sender did not set it. */
  actions: TensorProto | null;
  obsSeq: bigint;
  policyId: string;
  inferenceLatencyMs: number;
  sessionId: string;
  /** Non-empty when the observation obs_seq was rejected (no actions then). */
  errorCode: string;
  errorMessage: string;
}

/** scoreflow.v1.Action */
export interface ActionProtoInit {
  timestampNs?: Int64Init;
  values?: NumberList;
}
export interface ActionProto {
  timestampNs: bigint;
  values: number[];
}

/** scoreflow.v1.Episode */
export interface EpisodeProtoInit {
  env?: string;
  index?: number;
  observations?: readonly ObservationProtoInit[];
  actions?: readonly ActionProtoInit[];
  rewards?: NumberList;
  success?: boolean;
  metadata?: Record<string, string>;
}
export interface EpisodeProto {
  env: string;
  index: number;
  observations: ObservationProto[];
  actions: ActionProto[];
  rewards: number[];
  /** Absent when unknown. */
  success?: boolean;
  metadata: Record<string, string>;
}

/** scoreflow.v1.ControlLoopMetrics */
export interface ControlLoopMetricsProtoInit {
  timestampNs?: Int64Init;
  windowS?: number;
  targetRateHz?: number;
  achievedRateHz?: number;
  jitterP50Ms?: number;
  jitterP99Ms?: number;
  jitterMaxMs?: number;
  deadlineMisses?: Int64Init;
  safeStops?: Int64Init;
  inferenceP50Ms?: number;
  inferenceP99Ms?: number;
  overlapErrorMax?: number;
  chunksRequested?: Int64Init;
  chunksReceived?: Int64Init;
  observationsDropped?: Int64Init;
}
export interface ControlLoopMetricsProto {
  timestampNs: bigint;
  windowS: number;
  targetRateHz: number;
  achievedRateHz: number;
  jitterP50Ms: number;
  jitterP99Ms: number;
  jitterMaxMs: number;
  deadlineMisses: bigint;
  safeStops: bigint;
  inferenceP50Ms: number;
  inferenceP99Ms: number;
  overlapErrorMax: number;
  chunksRequested: bigint;
  chunksReceived: bigint;
  observationsDropped: bigint;
}

/** scoreflow.v1.InfoRequest (no fields) */
export type InfoRequestProtoInit = Record<string, never>;
export type InfoRequestProto = Record<string, never>;

/** scoreflow.v1.ArraySpec */
export interface ArraySpecProtoInit {
  name?: string;
  shape?: NumberList;
  dtype?: DTypeName | number;
  low?: NumberList;
  high?: NumberList;
  elementNames?: readonly string[];
}
export interface ArraySpecProto {
  name: string;
  shape: number[];
  dtype: DTypeName | number;
  low: number[];
  high: number[];
  elementNames: string[];
}

/** scoreflow.v1.PolicyInfo */
export interface PolicyInfoProtoInit {
  policyId?: string;
  modelVersion?: string;
  env?: string;
  observation?: ArraySpecProtoInit;
  action?: ArraySpecProtoInit;
  obsHorizon?: number;
  predHorizon?: number;
  actionHorizon?: number;
  controlRateHz?: number;
  currentRow?: number;
  sampler?: string;
  samplingSteps?: number;
  maxMessageBytes?: number;
  maxSessions?: number;
  guidance?: string;
  samplingTemperature?: number;
  replanClearance?: number;
}
export interface PolicyInfoProto {
  policyId: string;
  modelVersion: string;
  env: string;
  observation: ArraySpecProto | null;
  action: ArraySpecProto | null;
  obsHorizon: number;
  predHorizon: number;
  actionHorizon: number;
  controlRateHz: number;
  currentRow: number;
  sampler: string;
  samplingSteps: number;
  maxMessageBytes: number;
  maxSessions: number;
  guidance: string;
  samplingTemperature: number;
  replanClearance: number;
}

/** scoreflow.v1.ResetRequest */
export interface ResetRequestProtoInit {
  sessionId?: string;
}
export interface ResetRequestProto {
  sessionId: string;
}

/** scoreflow.v1.ResetResponse */
export interface ResetResponseProtoInit {
  clearedObservations?: number;
}
export interface ResetResponseProto {
  clearedObservations: number;
}

/** scoreflow.v1.StreamError */
export interface StreamErrorProtoInit {
  code?: string;
  message?: string;
}
export interface StreamErrorProto {
  code: string;
  message: string;
}

/** scoreflow.v1.BridgeRequest (exactly one field set) */
export interface BridgeRequestProtoInit {
  observation?: ObservationProtoInit;
  info?: InfoRequestProtoInit;
  reset?: ResetRequestProtoInit;
}
export interface BridgeRequestProto {
  /** oneof request: exactly the member that was sent is present. */
  observation?: ObservationProto;
  info?: InfoRequestProto;
  reset?: ResetRequestProto;
}

/** scoreflow.v1.BridgeReply (exactly one field set) */
export interface BridgeReplyProtoInit {
  chunk?: ActionChunkProtoInit;
  info?: PolicyInfoProtoInit;
  reset?: ResetResponseProtoInit;
  error?: StreamErrorProtoInit;
}
export interface BridgeReplyProto {
  /** oneof reply: exactly the member that was sent is present. */
  chunk?: ActionChunkProto;
  info?: PolicyInfoProto;
  reset?: ResetResponseProto;
  error?: StreamErrorProto;
}

/** Fully-qualified type name -> encode input and decode output shapes. */
export interface ProtoMessages {
  'scoreflow.v1.Tensor': { init: TensorProtoInit; decoded: TensorProto };
  'scoreflow.v1.Observation': { init: ObservationProtoInit; decoded: ObservationProto };
  'scoreflow.v1.ActionChunk': { init: ActionChunkProtoInit; decoded: ActionChunkProto };
  'scoreflow.v1.Action': { init: ActionProtoInit; decoded: ActionProto };
  'scoreflow.v1.Episode': { init: EpisodeProtoInit; decoded: EpisodeProto };
  'scoreflow.v1.ControlLoopMetrics': { init: ControlLoopMetricsProtoInit; decoded: ControlLoopMetricsProto };
  'scoreflow.v1.InfoRequest': { init: InfoRequestProtoInit; decoded: InfoRequestProto };
  'scoreflow.v1.ArraySpec': { init: ArraySpecProtoInit; decoded: ArraySpecProto };
  'scoreflow.v1.PolicyInfo': { init: PolicyInfoProtoInit; decoded: PolicyInfoProto };
  'scoreflow.v1.ResetRequest': { init: ResetRequestProtoInit; decoded: ResetRequestProto };
  'scoreflow.v1.ResetResponse': { init: ResetResponseProtoInit; decoded: ResetResponseProto };
  'scoreflow.v1.StreamError': { init: StreamErrorProtoInit; decoded: StreamErrorProto };
  'scoreflow.v1.BridgeRequest': { init: BridgeRequestProtoInit; decoded: BridgeRequestProto };
  'scoreflow.v1.BridgeReply': { init: BridgeReplyProtoInit; decoded: BridgeReplyProto };
}

export type ProtoTypeName = keyof ProtoMessages;
