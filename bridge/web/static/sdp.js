// The little of SDP the client reads: which media section carries whose track.

/**
 * The media sections of an SDP: `{mid, kind, port, direction, streamId, trackId}`.
 * `streamId`/`trackId` come from `a=msid:<stream> <track>` (or the `msid` of `a=ssrc`);
 * on the receive connection they are the publisher's participant id and the source.
 */
export function mediaSections(sdp) {
  const sections = [];
  let current = null;
  let sessionDirection = "sendrecv";
  for (const line of sdp.split(/\r?\n/)) {
    if (line.startsWith("m=")) {
      const [kind, port] = line.slice(2).split(" ");
      current = {
        mid: null, kind, port: Number(port), direction: sessionDirection,
        streamId: null, trackId: null,
      };
      sections.push(current);
      continue;
    }
    const direction = /^a=(sendrecv|sendonly|recvonly|inactive)$/.exec(line.trim());
    if (direction) {
      if (current) current.direction = direction[1];
      else sessionDirection = direction[1];
      continue;
    }
    if (!current) continue;
    if (line.startsWith("a=mid:")) {
      current.mid = line.slice(6).trim();
    } else if (line.startsWith("a=msid:")) {
      setMsid(current, line.slice(7));
    } else if (/^a=ssrc:\d+ msid:/.test(line) && current.streamId === null) {
      setMsid(current, line.slice(line.indexOf("msid:") + 5));
    }
  }
  return sections;
}

function setMsid(section, value) {
  const [streamId, trackId] = value.trim().split(/\s+/);
  section.streamId = streamId || null;
  section.trackId = trackId || null;
}

/** Whether the side that wrote this section sends media in it. */
export function isSending(section) {
  return section.port !== 0 && (section.direction === "sendonly" || section.direction === "sendrecv");
}
