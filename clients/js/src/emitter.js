// A tiny typed event emitter: the same small surface in browsers and Node.

/**
 * @template {Record<string, any>} M  event name -> payload type
 */
export class Emitter {
  /** @type {Map<keyof M, Set<(ev: any) => void>>} */
  #handlers = new Map();

  /**
   * Subscribe; returns a function that unsubscribes.
   * @template {keyof M} K
   * @param {K} type
   * @param {(ev: M[K]) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this.#handlers.get(type);
    if (!set) this.#handlers.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * @template {keyof M} K
   * @param {K} type
   * @param {(ev: M[K]) => void} fn
   */
  off(type, fn) {
    this.#handlers.get(type)?.delete(fn);
  }

  /**
   * Subscribe for the next event only.
   * @template {keyof M} K
   * @param {K} type
   * @param {(ev: M[K]) => void} fn
   * @returns {() => void}
   */
  once(type, fn) {
    const off = this.on(type, (ev) => {
      off();
      fn(ev);
    });
    return off;
  }

  /**
   * Call every handler of `type`. A handler that throws does not stop the
   * others nor the SDK's own processing: its exception is re-thrown on a
   * fresh task (reported like an EventTarget listener's).
   * @template {keyof M} K
   * @param {K} type
   * @param {M[K]} ev
   */
  emit(type, ev) {
    const set = this.#handlers.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(ev);
      } catch (err) {
        setTimeout(() => {
          throw err;
        }, 0);
      }
    }
  }
}
