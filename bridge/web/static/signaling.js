// One signaling WebSocket (`/meet/<id>/ws`, protocol version 1, see docs/protocol.md):
// JSON text messages with a `type`, and a keep-alive that notices a dead network.

export const PROTOCOL_VERSION = 1;
const PING_EVERY_MS = 15000;
// With no message at all (not even a pong) for this long, the connection is dead.
const SILENCE_LIMIT_MS = 40000;

export function signalingUrl(meetingId, loc = window.location) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}/meet/${encodeURIComponent(meetingId)}/ws`;
}

export class Signaling {
  /**
   * @param {string} url
   * @param {{onMessage: (message: object) => void, onClose: (reason: string) => void}} handlers
   *   Once open, `onClose` is called once, when the socket closes for any reason but
   *   `close()`.
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.socket = null;
    this.opened = false;
    this.closed = false;
    this.lastHeard = Date.now();
  }

  /** Resolves once the socket is open; rejects if it fails or takes longer than `timeoutMs`. */
  open(timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url);
      this.socket = socket;
      const timer = setTimeout(() => {
        socket.close();
        reject(new Error("The meeting server did not answer in time."));
      }, timeoutMs);
      socket.addEventListener("open", () => {
        clearTimeout(timer);
        this.opened = true;
        this.lastHeard = Date.now();
        this.keepAlive = setInterval(() => this.checkAlive(), PING_EVERY_MS);
        resolve();
      });
      socket.addEventListener("message", (event) => this.receive(event));
      socket.addEventListener("close", (event) => {
        clearTimeout(timer);
        if (!this.opened) {
          this.closed = true;
          reject(new Error("Could not reach the meeting server."));
          return;
        }
        this.finish(`closed (${event.code})`);
      });
    });
  }

  receive(event) {
    this.lastHeard = Date.now();
    if (typeof event.data !== "string") return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      console.warn("Signaling: a message that is not JSON was ignored");
      return;
    }
    if (message && typeof message.type === "string") this.handlers.onMessage(message);
  }

  send(message) {
    if (this.socket?.readyState !== WebSocket.OPEN) return false;
    this.socket.send(JSON.stringify(message));
    return true;
  }

  checkAlive() {
    if (Date.now() - this.lastHeard > SILENCE_LIMIT_MS) {
      this.socket.close(4000, "no answer");
      this.finish("no answer from the server");
      return;
    }
    this.send({ type: "ping" });
  }

  finish(reason) {
    clearInterval(this.keepAlive);
    if (this.closed) return;
    this.closed = true;
    this.handlers.onClose(reason);
  }

  /** Closes the socket on purpose: `onClose` is not called. */
  close() {
    this.closed = true;
    clearInterval(this.keepAlive);
    this.socket?.close(1000);
  }
}
