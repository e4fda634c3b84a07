// A Matrix client hosting Element Call as Element Web does, for browser tests.
//
// Element Web embeds the element-call-embedded build as a virtual widget and talks to
// it with matrix-widget-api's ClientWidgetApi; its WidgetDriver (StopGapWidgetDriver)
// does what the widget asks on the user's homeserver. This page does the same with a
// driver that calls Synapse's client-server API with the person's access token, and a
// /sync loop that feeds room events, state and to-device messages to the widget.
//
// One difference: Element Web Olm-encrypts to-device messages the widget asks to have
// encrypted (Element Call's media keys); this page has no Olm and sends them in the
// clear, marked unencrypted on the way in. The media itself stays end-to-end encrypted
// by Element Call with those keys.
//
// window.ecHost: start(options), hangUp(), state (JSON-able), log (widget actions).
"use strict";
(() => {
  const { ClientWidgetApi, Widget, WidgetDriver, OpenIDRequestState } = window.mxwidgets;

  const state = {
    ready: false,
    capabilities: [],
    joined: false,
    hungUp: false,
    errors: [],
    syncs: 0,
    fed: { events: 0, state: 0, toDevice: 0 },
    sent: [],
  };
  const log = [];
  let options = null;
  let api = null;
  let txn = 0;

  /** An error from the homeserver, kept so processError can give it to the widget. */
  class MatrixHttpError extends Error {
    constructor(status, url, body) {
      super(`${status} ${body?.errcode ?? ""} ${body?.error ?? ""} from ${url}`);
      this.status = status;
      this.url = url;
      this.body = body;
    }
  }

  async function matrix(method, path, body, query) {
    const url = new URL(options.homeserverUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) url.searchParams.set(key, `${value}`);
    const response = await fetch(url, {
      method,
      headers: {
        Authorization: `Bearer ${options.accessToken}`,
        ...(body === undefined ? {} : { "Content-Type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const json = text ? JSON.parse(text) : {};
    if (!response.ok) throw new MatrixHttpError(response.status, url.href, json);
    return json;
  }

  const e = encodeURIComponent;
  const nextTxn = () => `ec-host-${Date.now()}-${++txn}`;

  function eventPath(roomId, eventType, stateKey) {
    return stateKey === null || stateKey === undefined
      ? `/_matrix/client/v3/rooms/${e(roomId)}/send/${e(eventType)}/${e(nextTxn())}`
      : `/_matrix/client/v3/rooms/${e(roomId)}/state/${e(eventType)}/${e(stateKey)}`;
  }

  function record(kind, eventType, stateKey, extra) {
    state.sent.push({ kind, type: eventType, state_key: stateKey ?? null, ...extra });
  }

  class SynapseDriver extends WidgetDriver {
    // Element Web asks the user; the test approves everything Element Call requests.
    async validateCapabilities(requested) {
      state.capabilities = [...requested];
      return new Set(requested);
    }

    async sendEvent(eventType, content, stateKey = null, roomId = null) {
      roomId = roomId || options.roomId;
      const result = await matrix("PUT", eventPath(roomId, eventType, stateKey), content);
      record("event", eventType, stateKey, { content });
      return { roomId, eventId: result.event_id };
    }

    // MSC4140 delayed events: the same endpoints with a delay parameter.
    async sendDelayedEvent(delay, eventType, content, stateKey = null, roomId = null) {
      roomId = roomId || options.roomId;
      const result = await matrix("PUT", eventPath(roomId, eventType, stateKey), content, {
        "org.matrix.msc4140.delay": delay,
      });
      record("delayed", eventType, stateKey, { delay, delay_id: result.delay_id, content });
      return { roomId, delayId: result.delay_id };
    }

    // MSC4354 sticky events (Element Call's matrix_2_0 mode only).
    async sendStickyEvent(stickyDurationMs, eventType, content, roomId = null) {
      roomId = roomId || options.roomId;
      const result = await matrix("PUT", eventPath(roomId, eventType, null), content, {
        "org.matrix.msc4354.sticky_duration_ms": stickyDurationMs,
      });
      return { roomId, eventId: result.event_id };
    }

    async sendDelayedStickyEvent(delay, stickyDurationMs, eventType, content, roomId = null) {
      roomId = roomId || options.roomId;
      const result = await matrix("PUT", eventPath(roomId, eventType, null), content, {
        "org.matrix.msc4140.delay": delay,
        "org.matrix.msc4354.sticky_duration_ms": stickyDurationMs,
      });
      return { roomId, delayId: result.delay_id };
    }

    async updateDelayedEvent(delayId, action) {
      await matrix(
        "POST",
        `/_matrix/client/unstable/org.matrix.msc4140/delayed_events/${e(delayId)}/${action}`,
        {},
      );
      record(`delayed_${action}`, null, null, { delay_id: delayId });
    }

    cancelScheduledDelayedEvent(delayId) {
      return this.updateDelayedEvent(delayId, "cancel");
    }

    restartScheduledDelayedEvent(delayId) {
      return this.updateDelayedEvent(delayId, "restart");
    }

    sendScheduledDelayedEvent(delayId) {
      return this.updateDelayedEvent(delayId, "send");
    }

    async sendToDevice(eventType, encrypted, contentMap) {
      // No Olm here (see the top of this file): sent in the clear either way.
      await matrix("PUT", `/_matrix/client/v3/sendToDevice/${e(eventType)}/${e(nextTxn())}`, {
        messages: contentMap,
      });
      record("to_device", eventType, null, { encrypted, to: Object.keys(contentMap) });
    }

    async readRoomState(roomId, eventType, stateKey) {
      const events = await matrix("GET", `/_matrix/client/v3/rooms/${e(roomId)}/state`);
      return events
        .filter((ev) => ev.type === eventType && (stateKey === undefined || ev.state_key === stateKey))
        .map((ev) => ({ ...ev, room_id: roomId }));
    }

    async readRoomTimeline(roomId, eventType, msgtype, stateKey, limit, since) {
      const page = await matrix("GET", `/_matrix/client/v3/rooms/${e(roomId)}/messages`, undefined, {
        dir: "b",
        limit: Math.min(limit || 100, 100),
      });
      const found = [];
      for (const ev of page.chunk) {
        if (since !== undefined && ev.event_id === since) break;
        if (ev.type !== eventType) continue;
        if (stateKey !== undefined && ev.state_key !== stateKey) continue;
        if (msgtype !== undefined && ev.content?.msgtype !== msgtype) continue;
        found.push({ ...ev, room_id: roomId });
      }
      return found;
    }

    async readStickyEvents() {
      return []; // no sticky events in compatibility mode
    }

    async readEventRelations(eventId, roomId, relationType, eventType, from, to, limit, direction) {
      roomId = roomId || options.roomId;
      let path = `/_matrix/client/v1/rooms/${e(roomId)}/relations/${e(eventId)}`;
      if (relationType) path += `/${e(relationType)}`;
      if (relationType && eventType) path += `/${e(eventType)}`;
      const query = {};
      if (from) query.from = from;
      if (to) query.to = to;
      if (limit) query.limit = limit;
      if (direction) query.dir = direction;
      const result = await matrix("GET", path, undefined, query);
      return { chunk: result.chunk, nextBatch: result.next_batch, prevBatch: result.prev_batch };
    }

    askOpenID(observer) {
      matrix("POST", `/_matrix/client/v3/user/${e(options.userId)}/openid/request_token`, {}).then(
        (token) => observer.update({ state: OpenIDRequestState.Allowed, token }),
        (error) => {
          state.errors.push(`openid: ${error}`);
          observer.update({ state: OpenIDRequestState.Blocked });
        },
      );
    }

    // MSC4515: the widget cannot call the homeserver itself, so the host asks its
    // homeserver's MSC4143 endpoint.
    async getRtcTransports() {
      const result = await matrix("GET", "/_matrix/client/unstable/org.matrix.msc4143/rtc/transports");
      return { rtc_transports: result.rtc_transports ?? [] };
    }

    async getMediaConfig() {
      return matrix("GET", "/_matrix/client/v1/media/config");
    }

    getKnownRooms() {
      return [options.roomId];
    }

    // Lets the widget's matrix-js-sdk see a homeserver error as a MatrixError (for
    // example M_NOT_FOUND on an expired delayed event, which it handles).
    processError(error) {
      if (!(error instanceof MatrixHttpError)) return undefined;
      return {
        matrix_api_error: {
          http_status: error.status,
          http_headers: {},
          url: error.url,
          response: { errcode: error.body?.errcode ?? "M_UNKNOWN", error: error.body?.error ?? "" },
        },
      };
    }
  }

  // ------------------------------------------------------------------ sync

  /** Feeds what /sync brings to the widget, as Element Web does from its client. */
  async function feed(sync) {
    for (const message of sync.to_device?.events ?? []) {
      state.fed.toDevice += 1;
      await api.feedToDevice(message, false);
    }
    const room = sync.rooms?.join?.[options.roomId];
    if (!room) return;
    for (const raw of room.state?.events ?? []) {
      state.fed.state += 1;
      await api.feedStateUpdate({ ...raw, room_id: options.roomId });
    }
    for (const raw of room.timeline?.events ?? []) {
      const event = { ...raw, room_id: options.roomId };
      state.fed.events += 1;
      await api.feedEvent(event);
      if (event.state_key !== undefined) await api.feedStateUpdate(event);
    }
  }

  async function syncLoop() {
    // The widget reads the room's state itself once its capabilities are approved;
    // from then on it learns of changes here.
    const first = await matrix("GET", "/_matrix/client/v3/sync", undefined, {
      filter: JSON.stringify({ room: { timeline: { limit: 1 } } }),
    });
    let since = first.next_batch;
    while (!state.stopped) {
      try {
        const sync = await matrix("GET", "/_matrix/client/v3/sync", undefined, {
          since,
          timeout: 5000,
        });
        since = sync.next_batch;
        state.syncs += 1;
        await feed(sync);
      } catch (error) {
        state.errors.push(`sync: ${error}`);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  // ------------------------------------------------------------------ widget

  /** The iframe URL, with the parameters Element Web's ElementCall.generateWidgetUrl
   *  sets (and the widget API's widgetId and parentUrl). */
  function widgetUrl(widgetId) {
    const params = new URLSearchParams({
      widgetId,
      parentUrl: window.location.href.split("#", 2)[0],
      roomId: options.roomId,
      userId: options.userId,
      deviceId: options.deviceId,
      baseUrl: options.homeserverUrl,
      lang: "en",
      theme: "light",
      fontScale: "1",
      confineToRoom: "true",
      header: "none",
      intent: options.intent,
      skipLobby: "true",
      returnToLobby: "false",
      perParticipantE2EE: `${options.perParticipantE2EE}`,
      sendNotificationType: "notification",
      preload: "false",
    });
    return `${new URL(options.elementCallUrl, window.location.href).href}#?${params}`;
  }

  function start(given) {
    options = given;
    const widgetId = `element-call-${Math.random().toString(36).slice(2)}`;
    const url = widgetUrl(widgetId);
    const iframe = document.createElement("iframe");
    iframe.id = "element-call";
    iframe.title = "Element Call";
    iframe.allow =
      "microphone; camera; encrypted-media; autoplay; display-capture; clipboard-write; compute-pressure";
    iframe.sandbox =
      "allow-forms allow-popups allow-popups-to-escape-sandbox allow-same-origin allow-scripts allow-modals allow-downloads";
    iframe.src = url;
    document.body.append(iframe);
    // Element Call says when it has loaded (ContentLoaded), as Element Web expects of it.
    const widget = new Widget({
      id: widgetId,
      creatorUserId: options.userId,
      type: "m.call",
      url,
      waitForIframeLoad: false,
    });
    api = new ClientWidgetApi(widget, iframe, new SynapseDriver());
    api.setViewedRoomId(options.roomId);
    api.on("ready", () => {
      state.ready = true;
    });
    api.on("error:preparing", (error) => state.errors.push(`preparing: ${error}`));
    // Element Call's own actions to its host: joined, hung up, close, mute state.
    for (const action of ["io.element.join", "im.vector.hangup", "io.element.close", "io.element.device_mute", "set_always_on_screen"]) {
      api.on(`action:${action}`, (event) => {
        event.preventDefault();
        log.push({ action, data: event.detail.data });
        if (action === "io.element.join") state.joined = true;
        if (action === "im.vector.hangup") state.hungUp = true;
        api.transport.reply(event.detail, {});
      });
    }
    syncLoop();
    return url;
  }

  /** What Element Web's hang-up button does: ask the widget to hang up. */
  async function hangUp() {
    return api.transport.send("im.vector.hangup", {});
  }

  function stop() {
    state.stopped = true;
  }

  window.ecHost = { start, hangUp, stop, state, log, get api() { return api; } };
})();
