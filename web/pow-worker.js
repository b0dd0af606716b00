// Solves the gateway's join challenge (proof of work, `sha256-leading-zero-bits`)
// off the page's main thread: finds the first decimal string s such that
// SHA-256(challenge ":" s) starts with `difficulty` zero bits, and reports
// progress on the way. SHA-256 is written out here (no library, no network):
// the message is the same prefix for every try, so the blocks of the prefix
// are hashed once (the "midstate") and each try hashes only the last block,
// about twice as fast as hashing the whole message each time.
//
// in:  {challenge: string, difficulty: number, maxTries?: number}
// out: {type: 'progress', tried: number}  every 65,536 tries
//      {type: 'solved', solution: string, tried: number, ms: number}
//      {type: 'gave_up', tried: number, ms: number}  after maxTries (for measuring the hash rate)

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
  0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
const W = new Uint32Array(64);

/** One SHA-256 compression of the 16 words in `block` into `h` (in place). */
function compress(h, block) {
  for (let i = 0; i < 16; i++) W[i] = block[i];
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15];
    const b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (k + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
  }
  h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
  h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + k) | 0;
}

/** Leading zero bits of a digest's first words. */
function zeroBits(h) {
  let n = 0;
  for (let i = 0; i < 8; i++) {
    if (h[i] === 0) { n += 32; continue; }
    return n + Math.clz32(h[i]);
  }
  return n;
}

function solve(challenge, difficulty, maxTries = Infinity) {
  const prefix = new TextEncoder().encode(`${challenge}:`);
  // the midstate: every whole block of the prefix, hashed once
  const mid = new Uint32Array(IV);
  const whole = Math.floor(prefix.length / 64);
  const block = new Uint32Array(16);
  for (let b = 0; b < whole; b++) {
    for (let i = 0; i < 16; i++) {
      const o = b * 64 + i * 4;
      block[i] = (prefix[o] << 24) | (prefix[o + 1] << 16) | (prefix[o + 2] << 8) | prefix[o + 3];
    }
    compress(mid, block);
  }
  const tail = prefix.subarray(whole * 64);
  const bytes = new Uint8Array(128);
  const h = new Uint32Array(8);
  const words = new Uint32Array(32);
  const started = Date.now();
  for (let n = 0; ; n++) {
    const digits = String(n);
    let len = tail.length;
    bytes.fill(0);
    bytes.set(tail, 0);
    for (let i = 0; i < digits.length; i++) bytes[len++] = digits.charCodeAt(i);
    bytes[len] = 0x80;
    const total = prefix.length + digits.length;
    const blocks = len + 9 <= 64 ? 1 : 2;
    const end = blocks * 64;
    // message length in bits, big-endian, in the last 8 bytes (fits in 32 bits here)
    const bits = total * 8;
    bytes[end - 4] = (bits >>> 24) & 0xff;
    bytes[end - 3] = (bits >>> 16) & 0xff;
    bytes[end - 2] = (bits >>> 8) & 0xff;
    bytes[end - 1] = bits & 0xff;
    for (let i = 0; i < blocks * 16; i++) words[i] = (bytes[i * 4] << 24) | (bytes[i * 4 + 1] << 16) | (bytes[i * 4 + 2] << 8) | bytes[i * 4 + 3];
    h.set(mid);
    compress(h, words.subarray(0, 16));
    if (blocks === 2) compress(h, words.subarray(16, 32));
    if (zeroBits(h) >= difficulty) return { solution: digits, tried: n + 1, ms: Date.now() - started };
    if ((n & 0xffff) === 0xffff) postMessage({ type: 'progress', tried: n + 1 });
    if (n + 1 >= maxTries) return { solution: null, tried: n + 1, ms: Date.now() - started };
  }
}

onmessage = (e) => {
  const { challenge, difficulty, maxTries } = e.data;
  const r = solve(challenge, difficulty, maxTries);
  postMessage(r.solution === null ? { type: 'gave_up', tried: r.tried, ms: r.ms } : { type: 'solved', ...r });
};
