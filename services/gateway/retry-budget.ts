/**
 * The retry budget (Envoy's `retry_budget`): retries in flight may not exceed a share
 * of the calls in flight, with a floor so that a quiet gateway can still retry. A sick
 * cluster therefore sees at most (1 + ratio) × the offered load, never a retry storm.
 */
export class RetryBudget {
  private retrying = 0;

  constructor(
    private readonly ratio: number,
    private readonly minConcurrent: number,
    private readonly activeCalls: () => number,
  ) {}

  tryAcquire(): boolean {
    if (this.retrying >= Math.max(this.minConcurrent, this.ratio * this.activeCalls())) {
      return false;
    }
    this.retrying++;
    return true;
  }

  release(): void {
    this.retrying--;
  }

  get inFlight(): number {
    return this.retrying;
  }
}
