/**
 * `PolicyService` over a raw byte stream, for simulators that cannot speak gRPC: a TCP server
 * (`BridgeServer`) or a child process's stdin/stdout (`serveBridgeStream`). Every frame is a
 * varint length followed by one `BridgeRequest` (client) or `BridgeReply` (server) message
 * (proto/service.proto). One connection is one policy session.
 *
 * An invalid observation is answered with a rejection (`BridgeReply{chunk}` whose ActionChunk
 * carries `error_code` / `error_message` and no actions) and the session goes on, as on gRPC. A
 * framing error, an undecodable frame or a frame above the size limit means the byte stream
 * itself can no longer be trusted: it gets one `BridgeReply{error}` naming the problem, then the
 * connection closes; other connections are unaffected. A peer that stops reading is disconnected once its unread
 * replies pass `maxPendingBytes`, so the server never buffers without bound.
 */
import * as net from 'node:net';
import type { Readable, Writable } from 'node:stream';
import type { BridgeReplyProto, BridgeReplyProtoInit, BridgeRequestProto, BridgeRequestProtoInit } from '../../../src/proto/messages.js';
import { decode, encode } from '../../../src/proto/registry.js';
import { encodeFrame, FrameError, FrameReader } from '../../../src/proto/framing.js';
import { fail, ValidationError } from '../../../src/util/validate.js';
import { PolicyHost, SessionError, type HostSession } from './host.js';

export interface BridgeOptions {
  /** Disconnect a peer whose unread replies exceed this many bytes (default 4 MiB). */
  readonly maxPendingBytes?: number;
}

export interface BridgeConnectionStats {
  frames: number;
  errors: number;
}

/**
 * Serve one session over a byte stream pair. Resolves when the connection ends (either side).
 * `output` receives framed BridgeReply messages.
 */
export function serveBridgeStream(host: PolicyHost, input: Readable, output: Writable, opts: BridgeOptions = {}, stats?: BridgeConnectionStats): Promise<void> {
  if (!(host instanceof PolicyHost)) fail('serveBridgeStream: host must be a PolicyHost');
  const maxPending = opts.maxPendingBytes ?? 4 * 1024 * 1024;
  const reader = new FrameReader({ maxFrameBytes: host.maxMessageBytes });
  return new Promise<void>((resolve) => {
    let done = false;
    let session: HostSession | undefined;
    const finish = (): void => {
      if (done) return;
      done = true;
      session?.close();
      input.off('data', onData);
      resolve();
    };
    const send = (reply: BridgeReplyProtoInit): void => {
      if (done && !reply.error) return;
      if (output.destroyed || !output.writable) return;
      output.write(encodeFrame(encode('scoreflow.v1.BridgeReply', reply)));
      if (output.writableLength > maxPending && !reply.error) {
        failWith(new SessionError('RESOURCE_EXHAUSTED', `the client is not reading its replies (${output.writableLength} bytes pending)`));
      }
    };
    const failWith = (err: SessionError): void => {
      if (done) return;
      if (stats) stats.errors++;
      send({ error: { code: err.code, message: err.message } });
      finish();
      // Let the error frame flush, then close.
      if (typeof (output as net.Socket).end === 'function') (output as net.Socket).end();
    };
    try {
      session = host.openSession({ chunk: (msg) => send({ chunk: msg }), error: (err) => failWith(err) });
    } catch (err) {
      failWith(err instanceof SessionError ? err : new SessionError('INTERNAL', (err as Error).message));
      return;
    }
    const handle = (frame: Uint8Array): void => {
      if (stats) stats.frames++;
      let req: BridgeRequestProto;
      try {
        req = decode('scoreflow.v1.BridgeRequest', frame);
      } catch (err) {
        failWith(new SessionError('INVALID_ARGUMENT', `malformed BridgeRequest (${frame.length} bytes): ${(err as Error).message}`));
        return;
      }
      if (req.observation) session!.push(req.observation);
      else if (req.info) send({ info: host.policyInfo() });
      else if (req.reset) {
        try {
          send({ reset: { clearedObservations: host.reset(req.reset.sessionId || session!.id) } });
        } catch (err) {
          const e = err instanceof SessionError ? err : new SessionError('INVALID_ARGUMENT', (err as Error).message);
          // A reset of an unknown session is the caller's mistake, not a broken stream.
          send({ error: { code: e.code, message: e.message } });
        }
      } else failWith(new SessionError('INVALID_ARGUMENT', 'empty BridgeRequest: set one of observation, info, reset'));
    };
    function onData(chunk: Buffer | string): void {
      if (done) return;
      if (typeof chunk === 'string') {
        failWith(new SessionError('INVALID_ARGUMENT', 'the bridge stream must be binary'));
        return;
      }
      const frameError = (err: Error): void => {
        const code = err instanceof FrameError && /over the \d+-byte limit/.test(err.message) ? 'RESOURCE_EXHAUSTED' : 'INVALID_ARGUMENT';
        failWith(new SessionError(code, `bad frame: ${err.message}`));
      };
      let frames: Uint8Array[];
      try {
        frames = reader.push(chunk);
      } catch (err) {
        frameError(err as Error);
        return;
      }
      for (const f of frames) {
        if (done) return;
        handle(f);
      }
      // Good frames before a bad one in the same read were answered above; now the error.
      if (reader.error && !done) frameError(reader.error);
    }
    input.on('data', onData);
    input.once('end', finish);
    input.once('close', finish);
    input.once('error', finish);
    output.once('error', finish);
  });
}

/** How long a finished TCP connection waits for its peer to read the last replies and close. */
const CLOSE_LINGER_MS = 1000;

export interface BridgeServerOptions extends BridgeOptions {
  /** TCP port; 0 picks a free one. */
  readonly port?: number;
  readonly host?: string;
}

/** TCP bridge: one connection, one session. */
export class BridgeServer {
  readonly stats: BridgeConnectionStats = { frames: 0, errors: 0 };
  private readonly sockets = new Set<net.Socket>();
  connections = 0;

  private constructor(
    private readonly server: net.Server,
    readonly port: number,
  ) {}

  static async start(host: PolicyHost, opts: BridgeServerOptions = {}): Promise<BridgeServer> {
    const port = opts.port ?? 50052;
    if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`port: expected an integer in [0, 65535], received ${port}`);
    let self: BridgeServer | undefined;
    const server = net.createServer((socket) => {
      const s = self!;
      s.connections++;
      s.sockets.add(socket);
      socket.setNoDelay(true);
      socket.on('error', () => undefined);
      // Tracked until really closed, so that close() can destroy it.
      socket.once('close', () => s.sockets.delete(socket));
      void serveBridgeStream(host, socket, socket, opts, s.stats).then(() => {
        if (socket.destroyed) return;
        socket.end();
        // end() only completes once the peer has read everything and closed its side; a peer
        // that does neither (a slow reader, a half-open client) must not hold the socket forever.
        const linger = setTimeout(() => socket.destroy(), CLOSE_LINGER_MS);
        linger.unref();
        socket.once('close', () => clearTimeout(linger));
      });
    });
    server.on('error', () => undefined);
    const bindHost = opts.host ?? '127.0.0.1';
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new ValidationError(`BridgeServer: cannot listen on ${bindHost}:${port}: ${err.message}`));
      server.once('error', onError);
      server.listen(port, bindHost, () => {
        server.off('error', onError);
        resolve();
      });
    });
    self = new BridgeServer(server, (server.address() as net.AddressInfo).port);
    return self;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Minimal TCP client of the bridge (tests, examples, and a model for other languages). */
export class BridgeClient {
  private readonly reader: FrameReader;
  private readonly queue: BridgeReplyProto[] = [];
  private waiters: ((r: BridgeReplyProto | undefined) => void)[] = [];
  private ended = false;

  private constructor(readonly socket: net.Socket, maxFrameBytes: number) {
    this.reader = new FrameReader({ maxFrameBytes });
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.reader.push(chunk)) this.deliver(decode('scoreflow.v1.BridgeReply', f));
    });
    const end = (): void => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(undefined);
    };
    socket.on('close', end);
    socket.on('error', end);
  }

  static connect(port: number, host = '127.0.0.1', maxFrameBytes = 64 * 1024 * 1024): Promise<BridgeClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => {
        socket.off('error', reject);
        socket.setNoDelay(true);
        resolve(new BridgeClient(socket, maxFrameBytes));
      });
      socket.once('error', reject);
    });
  }

  private deliver(r: BridgeReplyProto): void {
    const w = this.waiters.shift();
    if (w) w(r);
    else this.queue.push(r);
  }

  send(req: BridgeRequestProtoInit): void {
    this.socket.write(encodeFrame(encode('scoreflow.v1.BridgeRequest', req)));
  }

  /** Next reply, or undefined when the connection has closed. */
  next(timeoutMs = 5000): Promise<BridgeReplyProto | undefined> {
    const q = this.queue.shift();
    if (q) return Promise.resolve(q);
    if (this.ended) return Promise.resolve(undefined);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new Error(`no bridge reply within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (r: BridgeReplyProto | undefined): void => {
        clearTimeout(t);
        resolve(r);
      };
      this.waiters.push(done);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}
