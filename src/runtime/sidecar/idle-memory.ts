/**
 * Memory back after a burst of traffic. Under load V8 grows its young generation to the maximum
 * semi-space (16 MiB each half on 64-bit) and old space with the garbage of the connections and
 * requests served; once the traffic stops it keeps those pages committed, and V8's own memory reducer
 * waits for a quiet heap it may not see for a long time (measured in bench:sidecar: a client sidecar
 * stayed at 100 MiB, 5 s after a 500 req/s burst, against 65 MiB before it). So: every `intervalMs` (3 s),
 * when this process spent at least `busyRatio` of a CPU in the previous interval and less than
 * `idleRatio` in the last one (traffic stopped), and V8's committed heap grew by `growthBytes` since
 * the last compaction, `compact` runs once (the sidecar passes lib/heap.ts `compactHeapSoon` with
 * plain full collections: the memory-reducing one also drops compiled code, which the next burst
 * paid for; src/cli/sidecar.ts). It waits until the process has stayed idle for `quietMs` (60 s):
 * after the full collections V8 drops much of its optimized code, and in bench:sidecar the 10 s of
 * the next burst cost the pair about 0.09 ms more per request (317 against 231 ms per 1k requests)
 * for at most 2 MiB given back, so pauses between bursts keep their compiled code and only a pod
 * that went quiet gives memory back. No cost per request; one timer (unref'd), one `cpuUsage` and
 * one `getHeapStatistics` per interval; nothing runs under steady traffic.
 */
import v8 from 'node:v8';

export interface IdleMemoryOptions {
  compact: () => void;
  intervalMs?: number;
  /** CPU share (0-1 of one CPU) below which an interval is idle (default 0.02). */
  idleRatio?: number;
  /** CPU share above which an interval was busy (default 0.05). */
  busyRatio?: number;
  /** Growth of V8's committed heap since the last compaction that makes one worth it (default 4 MiB). */
  growthBytes?: number;
  /**
   * How long the process must have stayed idle after traffic before the compaction runs (default
   * 60 s): a pause between bursts keeps the compiled code, only a pod that went quiet gives memory back.
   */
  quietMs?: number;
}

/** Starts watching; returns the stop function. */
export function compactAfterTraffic(o: IdleMemoryOptions): () => void {
  const interval = o.intervalMs ?? 3000;
  const idle = o.idleRatio ?? 0.02;
  const busyAbove = o.busyRatio ?? 0.05;
  const growth = o.growthBytes ?? 4 * 1024 * 1024;
  const quiet = o.quietMs ?? 60_000;
  let last = process.cpuUsage();
  let lastAt = performance.now();
  let wasBusy = false;
  /** performance.now() when the idle stretch after the last busy interval began; -1 = none yet. */
  let idleSince = -1;
  let baseline = v8.getHeapStatistics().total_physical_size;
  let compacted = false;
  const timer = setInterval(() => {
    const now = performance.now();
    const used = process.cpuUsage(last);
    last = process.cpuUsage();
    const ratio = (used.user + used.system) / 1000 / Math.max(1, now - lastAt);
    const intervalStart = lastAt;
    lastAt = now;
    const committed = v8.getHeapStatistics().total_physical_size;
    if (compacted) {
      // The heap as the compaction left it (measured one interval later): the new baseline.
      baseline = committed;
      compacted = false;
    }
    if (ratio >= busyAbove) {
      wasBusy = true;
      idleSince = -1;
    } else if (ratio < idle && wasBusy) {
      if (idleSince < 0) idleSince = intervalStart;
      if (now - idleSince >= quiet) {
        wasBusy = false;
        idleSince = -1;
        if (committed - baseline >= growth) {
          o.compact();
          compacted = true;
        }
      }
    } else idleSince = -1;
  }, interval);
  timer.unref();
  return () => clearInterval(timer);
}
