/**
 * `PolicyService` (proto/service.proto) over gRPC with @grpc/grpc-js.
 *
 * Messages cross grpc-js as raw bytes and are decoded here with the project's protobuf registry,
 * so a malformed message gets an answer naming what was wrong instead of a generic
 * deserialisation failure: on an Act stream, a rejection chunk (ActionChunk.error_code
 * INVALID_ARGUMENT, obs_seq 0, since the message could not be read), and the stream goes on, as
 * it does after an invalid observation (see host.ts). Messages above `maxMessageBytes` are refused by grpc-js with
 * RESOURCE_EXHAUSTED. One Act stream is one `HostSession`; its end, cancellation or error
 * releases the session. Nothing a client sends can throw out of a handler.
 */
import * as grpc from '@grpc/grpc-js';
import { decode, encode } from '../../../src/proto/registry.js';
import { fail, ValidationError } from '../../../src/util/validate.js';
import { PolicyHost, SessionError, type SessionErrorCode } from './host.js';

export const POLICY_SERVICE = 'scoreflow.v1.PolicyService';

const bytes = {
  serialize: (b: Uint8Array): Buffer => Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  deserialize: (b: Buffer): Uint8Array => b,
};

/** One PolicyService method carried as raw bytes (decoding happens in the handlers). */
function rawMethod<S extends boolean>(name: string, streaming: S) {
  return {
    path: `/${POLICY_SERVICE}/${name}`,
    requestStream: streaming,
    responseStream: streaming,
    requestSerialize: bytes.serialize,
    requestDeserialize: bytes.deserialize,
    responseSerialize: bytes.serialize,
    responseDeserialize: bytes.deserialize,
  };
}

/** Method table of PolicyService with byte-level (de)serialisers, shared by server and client. */
export const policyServiceDefinition = {
  Act: rawMethod('Act', true),
  Info: rawMethod('Info', false),
  Reset: rawMethod('Reset', false),
} satisfies grpc.ServiceDefinition;

export function grpcStatus(code: SessionErrorCode): grpc.status {
  return grpc.status[code];
}

export interface PolicyServerOptions {
  /** Port to listen on; 0 picks a free one (see `port`). Default 50051. */
  readonly port?: number;
  /** Default '127.0.0.1'; '0.0.0.0' to accept other machines. */
  readonly host?: string;
  /** Called with every chunk sent and observation received (live views, recorders). */
  readonly onTraffic?: (event: TrafficEvent) => void;
}

export type TrafficEvent = { kind: 'observation'; sessionId: string; bytes: Uint8Array } | { kind: 'chunk'; sessionId: string; bytes: Uint8Array };

export interface ServerStats {
  readonly streams: number;
  readonly streamErrors: number;
}

export class PolicyServer {
  private streams = 0;
  private streamErrors = 0;
  private readonly live = new Set<grpc.ServerDuplexStream<Uint8Array, Uint8Array>>();

  private constructor(
    readonly host: PolicyHost,
    private readonly server: grpc.Server,
    readonly port: number,
    readonly address: string,
  ) {}

  static async start(host: PolicyHost, opts: PolicyServerOptions = {}): Promise<PolicyServer> {
    if (!(host instanceof PolicyHost)) fail('PolicyServer.start: host must be a PolicyHost');
    const port = opts.port ?? 50051;
    if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`port: expected an integer in [0, 65535], received ${port}`);
    const bindHost = opts.host ?? '127.0.0.1';
    const server = new grpc.Server({
      'grpc.max_receive_message_length': host.maxMessageBytes,
      'grpc.max_send_message_length': 64 * 1024 * 1024,
      // channelz keeps per-connection records for debugging tools; a long-running server that
      // sees many short sessions should not accumulate them.
      'grpc.enable_channelz': 0,
    });
    let self: PolicyServer | undefined;
    const traffic = opts.onTraffic;
    const emit = (e: TrafficEvent): void => {
      try {
        traffic?.(e);
      } catch {
        // A broken observer never affects serving.
      }
    };
    server.addService(policyServiceDefinition, {
      Act: (call: grpc.ServerDuplexStream<Uint8Array, Uint8Array>) => self!.act(call, emit),
      Info: (_call: grpc.ServerUnaryCall<Uint8Array, Uint8Array>, cb: grpc.sendUnaryData<Uint8Array>) => {
        cb(null, encode('scoreflow.v1.PolicyInfo', host.policyInfo()));
      },
      Reset: (call: grpc.ServerUnaryCall<Uint8Array, Uint8Array>, cb: grpc.sendUnaryData<Uint8Array>) => {
        try {
          const req = decode('scoreflow.v1.ResetRequest', call.request);
          const cleared = host.reset(req.sessionId);
          cb(null, encode('scoreflow.v1.ResetResponse', { clearedObservations: cleared }));
        } catch (err) {
          const e = err instanceof SessionError ? err : new SessionError('INVALID_ARGUMENT', `ResetRequest: ${(err as Error).message}`);
          cb({ code: grpcStatus(e.code), details: e.message });
        }
      },
    });
    const bound = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`${bindHost}:${port}`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(new ValidationError(`cannot listen on ${bindHost}:${port}: ${err.message}`)) : resolve(p))),
    );
    self = new PolicyServer(host, server, bound, `${bindHost}:${bound}`);
    return self;
  }

  private act(call: grpc.ServerDuplexStream<Uint8Array, Uint8Array>, emit: (e: TrafficEvent) => void): void {
    this.streams++;
    this.live.add(call);
    let ended = false;
    const finish = (err?: SessionError): void => {
      if (ended) return;
      ended = true;
      this.live.delete(call);
      if (err) {
        this.streamErrors++;
        call.emit('error', { code: grpcStatus(err.code), details: err.message });
      } else if (!call.destroyed && call.writable) {
        call.end();
      }
    };
    let session;
    try {
      session = this.host.openSession({
        chunk: (msg) => {
          if (ended) return;
          const wire = encode('scoreflow.v1.ActionChunk', msg);
          call.write(wire);
          emit({ kind: 'chunk', sessionId: msg.sessionId ?? '', bytes: wire });
        },
        error: (err) => finish(err),
      });
    } catch (err) {
      finish(err instanceof SessionError ? err : new SessionError('INTERNAL', (err as Error).message));
      return;
    }
    const s = session;
    call.on('data', (buf: Uint8Array) => {
      if (ended || !s.open) return;
      let obs;
      try {
        obs = decode('scoreflow.v1.Observation', buf);
      } catch (err) {
        s.reject(0n, 0n, new SessionError('INVALID_ARGUMENT', `malformed Observation message (${buf.length} bytes): ${(err as Error).message}`));
        return;
      }
      if (!s.push(obs)) emit({ kind: 'observation', sessionId: s.id, bytes: buf });
    });
    // Half-close: the client sends no more observations but still gets the chunk it asked for.
    call.on('end', () => s.drain(() => finish()));
    const drop = (): void => {
      s.close();
      ended = true;
      this.live.delete(call);
    };
    call.on('cancelled', drop);
    call.on('close', drop);
    call.on('error', () => drop());
  }

  stats(): ServerStats {
    return { streams: this.streams, streamErrors: this.streamErrors };
  }

  /** Stop accepting, end live streams with UNAVAILABLE, and release the port. */
  async close(graceMs = 1000): Promise<void> {
    this.host.close();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }
}
