/** Fixed-capacity FIFO: pushing past capacity drops the oldest item, O(1). */
export class RingBuffer<T> {
  private readonly items: (T | undefined)[];
  private start = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.items = new Array(capacity);
  }

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.capacity === 0) return;
    if (this.count < this.capacity) {
      this.items[(this.start + this.count) % this.capacity] = item;
      this.count++;
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  at(index: number): T {
    return this.items[(this.start + index) % this.capacity] as T;
  }

  /** Items from logical index `from` to the end, at most `limit`. */
  slice(from: number, limit: number): T[] {
    const out: T[] = [];
    for (let i = Math.max(0, from); i < this.count && out.length < limit; i++) out.push(this.at(i));
    return out;
  }
}
