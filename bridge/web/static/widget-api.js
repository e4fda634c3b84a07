// The widget's end of the Matrix widget API (the postMessage protocol that npm
// `matrix-widget-api` implements), only as much as signing in needs: answer the client's
// requests (capabilities, supported versions, notifications) and ask for an OpenID token.
//
// A request is `{api, widgetId, requestId, action, data}`; its reply is the same object
// posted back with `response` added. `api` says who sent the request: "toWidget" from
// the client (Element), "fromWidget" from us.

const SUPPORTED_VERSIONS = ["0.0.1", "0.0.2"];
// Client notifications we take note of and acknowledge with an empty reply.
const ACKNOWLEDGED = new Set([
  "notify_capabilities", "theme_change", "language_change", "visibility", "widget_config",
  "update_state", "send_event", "send_to_device", "update_turn_servers",
]);
const REPLY_TIMEOUT_MS = 10000;
// How long the user may take to answer Element's "allow this widget to verify your identity".
const APPROVAL_TIMEOUT_MS = 5 * 60 * 1000;
// Without a capabilities request by then, the client waits for us to say we are loaded.
const CONTENT_LOADED_AFTER_MS = 2000;

/** A sign-in through the widget API that cannot succeed; `reason` says why. */
export class WidgetApiError extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason; // "blocked" | "no_reply" | "refused" | "bad_reply"
  }
}

export class WidgetApi {
  /**
   * @param {string} widgetId  from the `widgetId` query parameter Element adds
   * @param {string} parentUrl from the `parentUrl` query parameter; only its origin is used
   */
  constructor(widgetId, parentUrl, win = window) {
    this.widgetId = widgetId;
    this.parentOrigin = new URL(parentUrl).origin;
    this.window = win;
    this.parent = win.parent;
    this.pending = new Map(); // requestId -> {resolve, reject, timer}
    this.credentialWaiters = new Map(); // original requestId -> {resolve, reject, timer}
    this.counter = 0;
    this.capabilitiesAsked = false;
    this.ready = new Promise((resolve) => { this.markReady = resolve; });
    this.onMessage = this.onMessage.bind(this);
  }

  start() {
    this.window.addEventListener("message", this.onMessage);
    this.loadedTimer = setTimeout(() => {
      if (this.capabilitiesAsked) return;
      // Clients that do not wait for the frame's load event start after this.
      this.request("content_loaded", {}).catch(() => {});
      this.markReady();
    }, CONTENT_LOADED_AFTER_MS);
  }

  stop() {
    this.window.removeEventListener("message", this.onMessage);
    clearTimeout(this.loadedTimer);
  }

  /**
   * Ask the client for an OpenID token: `{access_token, matrix_server_name, expires_in}`.
   * `onWaiting` is called when the client asks the user first.
   */
  async getOpenIdCredentials(onWaiting = () => {}) {
    await this.ready;
    const requestId = this.nextRequestId();
    const later = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.credentialWaiters.delete(requestId);
        reject(new WidgetApiError("no_reply", "Element did not give the meeting your identity."));
      }, APPROVAL_TIMEOUT_MS);
      this.credentialWaiters.set(requestId, { resolve, reject, timer });
    });
    later.catch(() => {}); // unused when the first reply already holds the token
    let response;
    try {
      response = await this.request("get_openid", {}, requestId);
    } catch (error) {
      this.dropCredentialWaiter(requestId);
      throw error;
    }
    if (response.state === "request") {
      onWaiting();
      return checkCredentials(await later);
    }
    this.dropCredentialWaiter(requestId);
    return checkCredentials(response);
  }

  dropCredentialWaiter(requestId) {
    const waiter = this.credentialWaiters.get(requestId);
    if (waiter) clearTimeout(waiter.timer);
    this.credentialWaiters.delete(requestId);
  }

  nextRequestId() {
    this.counter += 1;
    return `visio-${Date.now()}-${this.counter}`;
  }

  request(action, data, requestId = this.nextRequestId()) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(requestId);
        reject(new WidgetApiError("no_reply", `Element did not answer (${action}).`));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(requestId, { resolve, reject, timer });
      this.post({ api: "fromWidget", widgetId: this.widgetId, requestId, action, data });
    });
  }

  post(message) {
    this.parent.postMessage(message, this.parentOrigin);
  }

  onMessage(event) {
    if (event.source !== this.parent || event.origin !== this.parentOrigin) return;
    const message = event.data;
    if (!message || typeof message !== "object") return;
    if (typeof message.action !== "string" || typeof message.requestId !== "string") return;
    if (message.widgetId !== undefined && message.widgetId !== this.widgetId) return;
    if (message.api === "toWidget" && !("response" in message)) {
      this.answer(message);
    } else if (message.api === "fromWidget" && "response" in message) {
      this.settle(message);
    }
  }

  settle(message) {
    const waiter = this.pending.get(message.requestId);
    if (!waiter) return;
    this.pending.delete(message.requestId);
    clearTimeout(waiter.timer);
    const response = message.response;
    if (!response || typeof response !== "object") {
      waiter.reject(new WidgetApiError("bad_reply", "Element's answer was not understood."));
    } else if (response.error) {
      const text = response.error.message || "Element refused the request.";
      waiter.reject(new WidgetApiError("refused", text));
    } else {
      waiter.resolve(response);
    }
  }

  answer(message) {
    const data = message.data && typeof message.data === "object" ? message.data : {};
    let response;
    switch (message.action) {
      case "capabilities":
        this.capabilitiesAsked = true;
        response = { capabilities: [] };
        break;
      case "supported_api_versions":
        response = { supported_versions: SUPPORTED_VERSIONS };
        break;
      case "openid_credentials":
        response = {};
        this.receiveCredentials(data);
        break;
      default:
        response = ACKNOWLEDGED.has(message.action)
          ? {}
          : { error: { message: `Unsupported action: ${message.action}` } };
    }
    this.post({ ...message, response });
    if (message.action === "capabilities" || message.action === "notify_capabilities") {
      this.markReady();
    }
  }

  receiveCredentials(data) {
    const waiter = this.credentialWaiters.get(data.original_request_id);
    if (!waiter) return;
    this.dropCredentialWaiter(data.original_request_id);
    waiter.resolve(data);
  }
}

function checkCredentials(response) {
  if (response.state === "blocked") {
    throw new WidgetApiError("blocked", "Element was not allowed to confirm your identity.");
  }
  if (
    response.state !== "allowed" ||
    typeof response.access_token !== "string" ||
    typeof response.matrix_server_name !== "string"
  ) {
    throw new WidgetApiError("bad_reply", "Element's answer did not hold a usable token.");
  }
  return {
    accessToken: response.access_token,
    serverName: response.matrix_server_name,
    expiresIn: Number(response.expires_in) || 3600,
  };
}
