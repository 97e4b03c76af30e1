/**
 * A token bucket for OCSP signatures that no pre-signed response can stand
 * for: `perSecond` a second, in bursts of up to a second's worth. The HSM's
 * signatures are shared with issuance and CRLs; an OCSP client must not be
 * able to spend them all.
 */
export class SignatureBudget {
  private tokens: number;
  private at: number;

  constructor(
    private readonly perSecond: number,
    private readonly now: () => number,
  ) {
    this.tokens = perSecond;
    this.at = now();
  }

  /** Takes one signature from the budget; false when there is none left this moment. */
  take(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.perSecond, this.tokens + ((t - this.at) * this.perSecond) / 1000);
    this.at = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
