/**
 * Conversion lift of a treated group over its holdout, with a 95% confidence interval.
 * Pure arithmetic on counts, so it is tested against hand-computed values.
 *
 * The difference of two proportions uses the Wald interval (fine at the sample sizes a journey
 * has by the time anyone reads lift); the relative lift uses the log of the risk ratio (Katz),
 * which stays valid when the holdout's rate is small.
 */
export interface Rate {
  users: number;
  conversions: number;
}

export interface Lift {
  /** Treated rate minus holdout rate, in absolute terms, with its 95% interval. */
  absolute: { value: number; low: number; high: number };
  /** Treated rate over holdout rate minus 1, with its 95% interval; null when undefined. */
  relative: { value: number; low: number; high: number } | null;
  /** Whether the absolute interval excludes zero. */
  significant: boolean;
}

const Z95 = 1.959964;

export function rateOf(r: Rate): number {
  return r.users === 0 ? 0 : r.conversions / r.users;
}

/** Null when either group has no users yet. */
export function liftOf(treated: Rate, holdout: Rate): Lift | null {
  if (treated.users === 0 || holdout.users === 0) return null;
  const pt = rateOf(treated);
  const ph = rateOf(holdout);
  const se = Math.sqrt((pt * (1 - pt)) / treated.users + (ph * (1 - ph)) / holdout.users);
  const diff = pt - ph;
  const absolute = { value: diff, low: diff - Z95 * se, high: diff + Z95 * se };
  let relative: Lift['relative'] = null;
  if (treated.conversions > 0 && holdout.conversions > 0) {
    const logRr = Math.log(pt / ph);
    const seLog = Math.sqrt(1 / treated.conversions - 1 / treated.users + 1 / holdout.conversions - 1 / holdout.users);
    relative = { value: pt / ph - 1, low: Math.exp(logRr - Z95 * seLog) - 1, high: Math.exp(logRr + Z95 * seLog) - 1 };
  }
  return { absolute, relative, significant: absolute.low > 0 || absolute.high < 0 };
}
