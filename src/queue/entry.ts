import type { AdmissionTokenIssuer } from '../auth/admission-token.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { AppError } from '../errors.js';
import type { QueueStore } from './store.js';

// Enter, the same for HTTP and WebSocket callers: the script decides (only a
// ready user, once), then the gateway signs the admission token.

export interface EntryDeps {
  store: QueueStore;
  /** is user authentication configured (then an event with access "user" needs a verified user to enter) */
  authConfigured: boolean;
  admission: AdmissionTokenIssuer;
  metrics: Metrics;
  log: Logger;
}

export interface Entry {
  eventId: string;
  reservationToken: string;
  ttlSec: number;
}

/** userId: the caller's authenticated user ('' in open mode). The admission token's subject is that user, else the user the place was bound to, else the waiting token. */
export async function enterLine(d: EntryDeps, token: string, userId: string, via: 'http' | 'ws'): Promise<Entry> {
  try {
    const r = await d.store.enter(token, userId, d.authConfigured, d.admission.ttlSec * 1000);
    const ttlSec = r.again ? d.admission.remainingSec(r.admittedMs) : d.admission.ttlSec;
    // Entered before (an answer lost on the way, another tab): the same admission again while it is valid,
    // signed from the same claims (same jti), never a second one.
    if (ttlSec <= 0) throw new AppError('ALREADY_ADMITTED', 'this place was admitted and its admission has expired', { reason: 'admission_expired' });
    const reservationToken = await d.admission.sign({ eventId: r.eventId, waitingToken: token, userId: userId || r.boundUser, admittedMs: r.admittedMs });
    d.metrics.queueOps.inc({ operation: 'enter', status: r.again ? 'again' : 'ok' });
    if (!r.again) {
      d.metrics.queueWait.observe(Math.max(0, (r.admittedMs - r.joinedMs) / 1000));
      d.log.info({ event_id: r.eventId, waited_ms: r.admittedMs - r.joinedMs, via }, 'admitted');
    } else d.log.debug({ event_id: r.eventId, via }, 'admitted before: same admission given again');
    return { eventId: r.eventId, reservationToken, ttlSec };
  } catch (err) {
    d.metrics.queueOps.inc({ operation: 'enter', status: err instanceof AppError ? err.code.toLowerCase() : 'error' });
    throw err;
  }
}
