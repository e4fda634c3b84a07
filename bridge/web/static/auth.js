// How this page proves who the user is (the `auth` of the `join` message):
// a personal link (`#token=...`, from `!visio link`) or, inside Element, an OpenID token
// obtained through the Matrix widget API.

import { WidgetApi } from "./widget-api.js";

// Ask Element for a fresh OpenID token once the current one has less than this left.
const OPENID_MARGIN_MS = 60 * 1000;

/** Reads a personal link's token from the address and removes it from the address bar. */
export function takeLinkToken(loc = window.location, history = window.history) {
  const fragment = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = fragment.get("token");
  if (!token) return null;
  fragment.delete("token");
  const rest = fragment.toString();
  // The token stays in memory for reconnects, never in the address bar or history.
  history.replaceState(history.state, "", loc.pathname + loc.search + (rest ? `#${rest}` : ""));
  return token;
}

/**
 * Reads an OpenID token that the meeting's host bridge handed over (`#openid=...`: the
 * person's own agency's bridge serves them), and removes it from the address bar. The
 * fragment never reaches a server.
 */
export function takeHandedOverToken(loc = window.location, history = window.history) {
  const fragment = new URLSearchParams(loc.hash.replace(/^#/, ""));
  const token = fragment.get("openid");
  const server = fragment.get("server");
  if (!token || !server) return null;
  const expiresAt = Number(fragment.get("expires"));
  for (const key of ["openid", "server", "expires"]) fragment.delete(key);
  const rest = fragment.toString();
  history.replaceState(history.state, "", loc.pathname + loc.search + (rest ? `#${rest}` : ""));
  return { token, server, expiresAt: Number.isFinite(expiresAt) ? expiresAt : 0 };
}

/** An OpenID token from Element, handed over by the host bridge's page. */
export class HandedOverAuth {
  constructor({ token, server, expiresAt }, displayName = "") {
    this.kind = "openid";
    this.current = { kind: "openid", server, token };
    this.expiresAt = expiresAt;
    this.displayName = displayName;
    this.onWaiting = () => {};
  }

  async credentials() {
    if (this.expiresAt && Date.now() >= this.expiresAt) {
      throw new Error("Your sign-in from Element has expired.");
    }
    return this.current;
  }

  suggestedName() {
    return this.displayName;
  }
}

/** A personal link: the same token for every (re)join. */
export class LinkAuth {
  constructor(token) {
    this.kind = "link";
    this.token = token;
  }

  async credentials() {
    return { kind: "link", token: this.token };
  }

  /** The Matrix display name the bot put in the link (signed, not secret), or "". */
  suggestedName() {
    try {
      const part = this.token.split(".")[0].replace(/-/g, "+").replace(/_/g, "/");
      const padded = part + "===".slice((part.length + 3) % 4);
      const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
      const payload = JSON.parse(new TextDecoder().decode(bytes));
      return typeof payload.d === "string" ? payload.d : "";
    } catch {
      return "";
    }
  }
}

/** Inside Element: OpenID tokens from the widget API, renewed before they expire. */
export class WidgetAuth {
  constructor(widgetId, parentUrl) {
    this.kind = "openid";
    this.api = new WidgetApi(widgetId, parentUrl);
    this.current = null;
    this.expiresAt = 0;
    this.inFlight = null;
    this.onWaiting = () => {};
  }

  /** Starts listening to Element at once, so that its first request is not missed. */
  start() {
    this.api.start();
    return this;
  }

  async credentials() {
    if (this.current && Date.now() < this.expiresAt - OPENID_MARGIN_MS) return this.current;
    if (!this.inFlight) {
      this.inFlight = this.api
        .getOpenIdCredentials(() => this.onWaiting())
        .then((token) => {
          this.current = { kind: "openid", server: token.serverName, token: token.accessToken };
          this.expiresAt = Date.now() + token.expiresIn * 1000;
          return this.current;
        })
        .finally(() => {
          this.inFlight = null;
        });
    }
    return this.inFlight;
  }
}

/** The sign-in this page can use, or null when it has none (no link, not in Element). */
export function chooseAuth(loc = window.location, history = window.history) {
  const query = new URLSearchParams(loc.search);
  const linkToken = takeLinkToken(loc, history);
  if (linkToken) return new LinkAuth(linkToken);
  const handedOver = takeHandedOverToken(loc, history);
  if (handedOver) return new HandedOverAuth(handedOver, query.get("displayName") ?? "");
  if (query.get("widget") === "1") {
    const parentUrl = query.get("parentUrl");
    const widgetId = query.get("widgetId");
    // Opened on its own (not in a frame), a widget URL has nobody to ask.
    if (!parentUrl || !widgetId || window.parent === window) return null;
    try {
      return new WidgetAuth(widgetId, parentUrl).start();
    } catch {
      return null; // parentUrl is not a URL
    }
  }
  return null;
}
