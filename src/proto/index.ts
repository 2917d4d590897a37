/** Protobuf codec helpers for the repository's proto/ files (see registry.ts for conventions). */
export * from './messages.js';
export {
  decode,
  defaultProtoDir,
  encode,
  fileDescriptorSet,
  messageType,
  ProtoError,
  ProtoRegistry,
  protoRegistry,
} from './registry.js';
export {
  fromTensorProto,
  TENSOR_DTYPES,
  tensorProtoDType,
  TensorProtoError,
  tensorProtoToTf,
  toTensorProto,
  type DecodedTensor,
  type FromTensorProtoOptions,
  type TensorData,
  type TensorDType,
  type ToTensorProtoOptions,
} from './tensor.js';
export {
  DEFAULT_MAX_FRAME_BYTES,
  encodeFrame,
  encodeFrames,
  FrameError,
  FrameReader,
  readFrames,
  type FrameReaderOptions,
} from './framing.js';
