/** Small helpers the benchmarks share: guest bytes, medians, timing. */

export const le16 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff]
export const le32 = (v: number): number[] => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, v >>> 24]

/** The middle value (the upper of the two middle ones for an even count). */
export const median = (xs: ReadonlyArray<number>): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!

export const secondsSince = (start: number): number => (performance.now() - start) / 1000

/** Process CPU time (user + system) since `since`, in seconds: what other processes on the same cores do not inflate. */
export const cpuSecondsSince = (since: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(since)
  return (used.user + used.system) / 1e6
}

/** Deterministic positions in [0, max]: a linear congruential sequence, so runs are comparable. */
export const positions = (n: number, max: number): number[] => {
  let x = 12345
  return Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31
    return x % (max + 1)
  })
}
