import pino from 'pino';

export type Logger = pino.Logger;

// Tokens are bearer credentials: never log them, wherever they appear.
const redact = [
  'authorization',
  'req.headers.authorization',
  'headers.authorization',
  'token',
  'waiting_token',
  'reservation_token',
  'adminToken',
  'password',
  '*.token',
  '*.waiting_token',
  '*.reservation_token',
  '*.password',
];

export function createLogger(level: string, base: Record<string, unknown> = {}): Logger {
  return pino({ level, base: { ...base }, redact: { paths: redact, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime });
}
