import { pack, unpack } from 'msgpackr';
import { checkClientMessage, type ClientMessage, type Format, type ServerMessage } from '../protocol/wire.js';

// Frames of the WebSocket protocol (src/protocol/wire.ts): JSON text frames
// by default; msgpack binary frames when the client offers the
// `waiting-room.v1.msgpack` subprotocol. Same fields either way.

export function encode(msg: ServerMessage, format: Format): string | Uint8Array {
  return format === 'msgpack' ? pack(msg) : JSON.stringify(msg);
}

/** Binary frames are msgpack and text frames JSON, whatever was negotiated for the server's own messages. */
export function parseClientMessage(data: ArrayBuffer, isBinary: boolean): ClientMessage | undefined {
  try {
    return checkClientMessage(isBinary ? unpack(new Uint8Array(data)) : JSON.parse(Buffer.from(data).toString('utf8')));
  } catch {
    return undefined; // not JSON / not msgpack
  }
}
