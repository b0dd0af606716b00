// The client's address, for rate limits and logs: the socket peer, or (only
// when TRUST_PROXY is on: the load balancer is the peer) the first hop of
// X-Forwarded-For, if it is an address at all.

const IP_RE = /^[0-9A-Fa-f:.]{2,45}$/;

export function clientAddress(remote: string, forwardedFor: string | undefined, trustProxy: boolean): string {
  if (trustProxy && forwardedFor) {
    const first = forwardedFor.split(',')[0]!.trim();
    if (IP_RE.test(first)) return first;
  }
  return remote;
}
