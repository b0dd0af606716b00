import pino from 'pino';
import pretty from 'pino-pretty';

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
  // ioredis puts the failed command's arguments on its errors (err.command.args): script arguments carry tokens
  'err.command.args',
  '*.err.command.args',
];

export type LogFormat = 'auto' | 'json' | 'pretty';

/**
 * JSON lines for collectors; readable lines for a person at a terminal
 * (`auto`: when stdout is a TTY). The pretty stream is synchronous in this
 * thread: a development aid, so no worker thread to flush at exit.
 */
export function createLogger(level: string, base: Record<string, unknown> = {}, format: LogFormat = 'json'): Logger {
  const options: pino.LoggerOptions = { level, base: { ...base }, redact: { paths: redact, censor: '[redacted]' }, timestamp: pino.stdTimeFunctions.isoTime };
  const readable = format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
  if (!readable) return pino(options);
  return pino(options, pretty({ sync: true, colorize: process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
}
