import { SignJWT, exportJWK, generateKeyPair, type KeyLike } from 'jose';
import { randomBytes } from 'node:crypto';

// The reservation_token returned by enter: a short-lived JWT signed by the
// gateway (EdDSA, with a kid) that downstream services can verify without
// calling us. This version signs with a key generated at start-up; key
// configuration, rotation, the JWKS route and single-use checking at
// POST /reservations arrive with the security work (issue 4).

export interface AdmissionClaims {
  eventId: string;
  waitingToken: string;
  userId: string;
}

export class AdmissionTokenIssuer {
  private constructor(
    private readonly key: KeyLike,
    readonly kid: string,
    readonly publicJwk: Record<string, unknown>,
    readonly ttlSec: number,
    private readonly issuer: string,
  ) {}

  static async ephemeral(ttlSec: number, issuer = 'waiting-room-gateway'): Promise<AdmissionTokenIssuer> {
    const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
    const kid = randomBytes(8).toString('hex');
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'EdDSA', use: 'sig' };
    return new AdmissionTokenIssuer(privateKey, kid, jwk, ttlSec, issuer);
  }

  sign(c: AdmissionClaims): Promise<string> {
    return new SignJWT({ evt: c.eventId, wt: c.waitingToken })
      .setProtectedHeader({ alg: 'EdDSA', kid: this.kid, typ: 'JWT' })
      .setIssuer(this.issuer)
      .setAudience('reservation')
      .setSubject(c.userId || c.waitingToken)
      .setJti(randomBytes(12).toString('base64url'))
      .setIssuedAt()
      .setExpirationTime(`${this.ttlSec}s`)
      .sign(this.key);
  }
}
