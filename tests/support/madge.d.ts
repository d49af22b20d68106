// madge ships no type declarations; only the part the architecture test uses.
declare module 'madge' {
  interface MadgeResult {
    circular(): string[][];
    warnings(): { skipped: string[] };
    obj(): Record<string, string[]>;
  }
  function madge(path: string, config?: Record<string, unknown>): Promise<MadgeResult>;
  export default madge;
}
