import { assign, createMachine, createActor, setup, stopChild, type ActorRefFrom, type AnyActorRef, type SnapshotFrom } from 'xstate';
import { Close, type CloseCode, type ServerMessage } from '../src/protocol/wire.js';

// The lifecycle of one waiting user, on the instance the user is attached to.
//
// Two parallel regions:
//  - lifecycle: [prequeue ->] waiting -> ready -> admitted | expired, or
//    left, or ended (the event ended while waiting). Every
//    transition is driven from outside: PROMOTED / EXITED come from the
//    admission ticks published by Redis (the Lua scripts decide), never from
//    this machine; DRAWN comes from the tick that drew the pre-queue (the
//    position follows from the draw). The ready window is a machine timer only so the local view
//    stops offering "enter" on time (ready.lapsed); the expiry itself is the
//    tick's (an EXITED with reason ready_timeout).
//  - connection: while at least one socket is open the user is live; when the
//    last one closes the reconnect grace runs as a machine timer, and when it
//    elapses the instance lets go of the user (GRACE_ELAPSED -> detached). It
//    does not remove anyone: the tick's liveness sweep does, and only if no
//    instance refreshed the user's liveness meanwhile (a user who reconnected
//    to another instance keeps the place).
//
// Deliberately not in here: per-tick position/ETA updates and HTTP polls.
// Those are the hot paths and are computed for all attached users at once
// (src/realtime/event-room.ts), without an event per actor.

export type ExitReason = 'entered' | 'left' | 'ready_timeout' | 'liveness' | string;

export interface UserInput {
  readonly state: 'prequeue' | 'waiting' | 'ready';
  readonly readyDeadlineMs: number;
  readonly reconnectGraceMs: number;
  /** local clock offset: Redis time - Date.now(), so deadlines from Redis become local timers */
  readonly clockOffsetMs: number;
  /** sockets open at creation (0 for a user attached by an HTTP poll) */
  readonly sockets: number;
  /** the user's waiting token, handed to onDetached */
  readonly token: string;
  /** called with the token when the reconnect grace ran out; one function for a whole room, not a closure per user */
  readonly onDetached: (token: string) => void;
}

export interface UserContext extends UserInput {
  sockets: number;
  readyDeadlineMs: number;
  exitReason: ExitReason | undefined;
}

export type UserEvent =
  | { type: 'DRAWN' }
  | { type: 'PROMOTED'; deadlineMs: number }
  | { type: 'EXITED'; reason: ExitReason }
  | { type: 'SOCKET_OPENED' }
  | { type: 'SOCKET_CLOSED' };

/** The final states of the lifecycle, plus `unknown`: a token this gateway has no record of. */
export type Outcome = 'admitted' | 'left' | 'expired' | 'ended' | 'unknown';

/**
 * The one outcome table: how a user's time in line ends on a socket (the
 * message sent before the close, then the close code and its reason text).
 * docs/PROTOCOL.md, section 5.
 */
export const OUTCOMES: Readonly<Record<Outcome, { readonly close: CloseCode; readonly closeReason: string; message(exitReason: ExitReason): ServerMessage | undefined }>> = {
  admitted: { close: Close.ADMITTED, closeReason: 'admitted', message: () => ({ type: 'admitted' }) },
  left: { close: Close.LEFT, closeReason: 'left', message: () => ({ type: 'left' }) },
  expired: { close: Close.EXPIRED, closeReason: 'expired', message: (reason) => ({ type: 'expired', reason }) },
  // the room sends the full `ended` message (reason, operator's message, time): this is the fallback
  ended: { close: Close.ENDED, closeReason: 'event ended', message: () => ({ type: 'ended', reason: 'ended', message: null, ended_at: new Date().toISOString() }) },
  // nothing to say before the close: the client asks the status, or starts over
  unknown: { close: Close.UNKNOWN_TOKEN, closeReason: 'unknown token', message: () => undefined },
};

/** Which final state an exit reason (from the tick, or done through this instance) leads to. */
export const outcomeOf = (reason: ExitReason): 'admitted' | 'left' | 'expired' | 'ended' =>
  reason === 'entered' ? 'admitted' : reason === 'left' ? 'left' : reason === 'ended' ? 'ended' : 'expired';
const finalFor = outcomeOf;

/**
 * The context, written out field by field. A spread (`{ ...input }`) gave
 * every user's context a hidden class of its own in the gateway (V8 clones
 * the source's map when the field representations differ: about 300 bytes
 * of map, descriptors and enum cache per user, bench/heap-diff.ts).
 */
function contextOf(input: UserInput): UserContext {
  return {
    state: input.state,
    readyDeadlineMs: input.readyDeadlineMs,
    reconnectGraceMs: input.reconnectGraceMs,
    clockOffsetMs: input.clockOffsetMs,
    sockets: input.sockets,
    token: input.token,
    onDetached: input.onDetached,
    exitReason: undefined,
  };
}

export const userLifecycle = createMachine(
  {
    id: 'user',
    types: {} as { context: UserContext; events: UserEvent; input: UserInput },
    type: 'parallel',
    context: ({ input }) => contextOf(input),
    states: {
      lifecycle: {
        initial: 'boot',
        states: {
          boot: {
            always: [
              { guard: ({ context }) => context.state === 'ready', target: 'ready' },
              { guard: ({ context }) => context.state === 'prequeue', target: 'prequeue' },
              { target: 'waiting' },
            ],
          },
          // in the pre-queue: no position until the draw
          prequeue: {
            on: { DRAWN: 'waiting' },
          },
          waiting: {
            on: {
              PROMOTED: { target: 'ready', actions: assign({ readyDeadlineMs: ({ event }) => event.deadlineMs }) },
            },
          },
          ready: {
            initial: 'open',
            states: {
              open: { after: { readyWindow: 'lapsed' } },
              lapsed: {},
            },
          },
          admitted: { type: 'final' },
          expired: { type: 'final' },
          left: { type: 'final' },
          ended: { type: 'final' },
        },
        on: {
          EXITED: [
            { guard: ({ event }) => finalFor(event.reason) === 'admitted', target: '.admitted', actions: assign({ exitReason: ({ event }) => event.reason }) },
            { guard: ({ event }) => finalFor(event.reason) === 'left', target: '.left', actions: assign({ exitReason: ({ event }) => event.reason }) },
            { guard: ({ event }) => finalFor(event.reason) === 'ended', target: '.ended', actions: assign({ exitReason: ({ event }) => event.reason }) },
            { target: '.expired', actions: assign({ exitReason: ({ event }) => event.reason }) },
          ],
        },
      },
      connection: {
        initial: 'boot',
        states: {
          boot: {
            always: [{ guard: ({ context }) => context.sockets > 0, target: 'connected' }, { target: 'polling' }],
          },
          // attached by HTTP polls: the room detaches idle pollers in bulk (no timer per poll)
          polling: {
            on: { SOCKET_OPENED: { target: 'connected', actions: assign({ sockets: ({ context }) => context.sockets + 1 }) } },
          },
          connected: {
            on: {
              SOCKET_OPENED: { actions: assign({ sockets: ({ context }) => context.sockets + 1 }) },
              SOCKET_CLOSED: [
                { guard: ({ context }) => context.sockets <= 1, target: 'grace', actions: assign({ sockets: 0 }) },
                { actions: assign({ sockets: ({ context }) => context.sockets - 1 }) },
              ],
            },
          },
          grace: {
            after: { reconnectGrace: 'detached' },
            on: { SOCKET_OPENED: { target: 'connected', actions: assign({ sockets: 1 }) } },
          },
          detached: { type: 'final', entry: ({ context }) => context.onDetached(context.token) },
        },
      },
    },
  },
  {
    delays: {
      readyWindow: ({ context }) => Math.max(0, context.readyDeadlineMs - context.clockOffsetMs - Date.now()),
      reconnectGrace: ({ context }) => context.reconnectGraceMs,
    },
  },
);

export type UserActor = ActorRefFrom<typeof userLifecycle>;
export type UserSnapshot = SnapshotFrom<typeof userLifecycle>;

/**
 * Users' actors share an actor system in groups of this many. A root actor
 * gets a system of its own (maps, scheduler, closures: about 1.8 KB of the
 * 4.1 KB an actor cost, bench/room-memory.ts); but stopping an actor scans
 * every timer of its system, so one system for a whole room would make a
 * mass exit quadratic. Groups keep the scan short and the saving almost all.
 */
const SYSTEM_GROUP = 256;

/**
 * The parent of a group: it holds the shared system and stops a child when
 * asked (XState lets only a parent stop a child). Everything else its
 * children tell it (done) it ignores.
 */
const userGroup = setup({ types: { events: {} as { type: 'stop'; child: AnyActorRef } } }).createMachine({
  id: 'users',
  on: { stop: { actions: stopChild(({ event }) => event.child) } },
});

let group: AnyActorRef | undefined;
let inGroup = 0;

export function startUserActor(input: UserInput): UserActor {
  if (!group || inGroup >= SYSTEM_GROUP) {
    group = createActor(userGroup).start();
    inGroup = 0;
  }
  inGroup++;
  if (input.state === 'waiting' || input.state === 'prequeue') {
    // The common case, built directly in its state: resolving the `boot` states' eventless
    // transitions at start was half of an actor's creation cost (64-73 µs against 27-42 µs,
    // 20,000 actors). Neither waiting state has a timer on entry, so nothing is skipped; a
    // user who is ready already (a ready-window timer) starts through `boot` as before.
    const snapshot = userLifecycle.resolveState({
      value: { lifecycle: input.state, connection: input.sockets > 0 ? 'connected' : 'polling' },
      context: contextOf(input),
    });
    return shed(createActor(userLifecycle, { snapshot, input, parent: group }).start());
  }
  return shed(createActor(userLifecycle, { input, parent: group }).start());
}

/**
 * What a started actor keeps of its creation options. XState's Actor holds
 * the options it was created with for its whole life, and reads only
 * `devTools` from them after start (Actor.attachDevTools; `input` and
 * `snapshot` are read in the constructor and in start()). Kept, they pin the
 * first snapshot (state value, children, history, tags set) and an options
 * object with a hidden class of its own (XState's `{ ...defaultOptions,
 * ...options }`): about 1.3 KB per waiting user (bench/heap-diff.ts on a
 * gateway holding 15,000 sockets). test/event-room.test.ts checks an actor
 * behaves the same either way.
 */
const STARTED_OPTIONS: Readonly<{ devTools: false }> = Object.freeze({ devTools: false });
function shed<A extends { options: object }>(actor: A): A {
  actor.options = STARTED_OPTIONS;
  return actor;
}

/** Stop a user's actor (its timers go with it); its group's parent does it. */
export function stopUserActor(actor: UserActor): void {
  const parent = actor._parent;
  if (parent) parent.send({ type: 'stop', child: actor });
  else actor.stop();
}

export type Lifecycle = 'prequeue' | 'waiting' | 'ready' | 'admitted' | 'expired' | 'left' | 'ended';

export function lifecycleOf(s: UserSnapshot): Lifecycle {
  const v = (s.value as { lifecycle: string | Record<string, string> }).lifecycle;
  const top = typeof v === 'string' ? v : Object.keys(v)[0]!;
  return top === 'boot' ? 'waiting' : (top as Lifecycle);
}

export function readyLapsed(s: UserSnapshot): boolean {
  return s.matches({ lifecycle: { ready: 'lapsed' } });
}
