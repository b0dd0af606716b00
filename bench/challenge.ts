// What the join challenge costs the gateway: node dist/bench/challenge.js
// Issuing a proof-of-work challenge and checking a solution (one HMAC, one
// SHA-256), in microseconds per call on one core, and what solving costs a
// client in Node at each difficulty (hashes per second: the page's Web
// Worker is measured in Chromium by test/browser-challenge.test.ts).
import { createHash } from 'node:crypto';
import { ChallengeIssuer, leadingZeroBits } from '../src/auth/challenge.js';

const issuer = new ChallengeIssuer('bench-secret-0123456789abcdef0123456789', 120_000, undefined);
const N = 50_000;
let t0 = process.hrtime.bigint();
let c = issuer.issue('bench', 8);
for (let i = 0; i < N; i++) c = issuer.issue('bench', 8);
const issueUs = Number(process.hrtime.bigint() - t0) / 1000 / N;
let solution = 0;
while (leadingZeroBits(createHash('sha256').update(`${c.challenge}:${solution}`).digest()) < 8) solution++;
t0 = process.hrtime.bigint();
for (let i = 0; i < N; i++) if (!issuer.checkPow({ challenge: c.challenge, solution: String(solution) }, 'bench', 8).ok) throw new Error('check failed');
const checkUs = Number(process.hrtime.bigint() - t0) / 1000 / N;
t0 = process.hrtime.bigint();
for (let i = 0; i < 1_000_000; i++) createHash('sha256').update(`${c.challenge}:${i}`).digest();
const hashesPerSec = 1_000_000 / (Number(process.hrtime.bigint() - t0) / 1e9);
console.log(`issue ${issueUs.toFixed(2)} µs, check ${checkUs.toFixed(2)} µs per call (${N} calls); Node SHA-256 ${Math.round(hashesPerSec).toLocaleString('en-US')} hashes/s`);
for (const d of [16, 18, 20]) console.log(`difficulty ${d}: 2^${d} = ${(2 ** d).toLocaleString('en-US')} hashes expected, median ${((Math.LN2 * 2 ** d) / hashesPerSec).toFixed(2)} s in Node at that rate`);
