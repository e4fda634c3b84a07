// The list of people in the meeting (a side panel): names, hands, microphones, roles.

import { icon } from "./icons.js";

function item(participant, you) {
  const li = document.createElement("li");
  li.dataset.participantId = participant.participant_id;
  const name = document.createElement("span");
  name.className = "person-name";
  name.textContent = (participant.display_name || participant.user_id || "Someone") + (you ? " (you)" : "");
  name.title = participant.user_id || "";
  li.append(name);
  if (participant.user_id && participant.user_id !== participant.display_name) {
    // The Matrix id beside the chosen name: nobody can pass as someone else.
    const id = document.createElement("span");
    id.className = "person-id";
    id.textContent = participant.user_id;
    li.append(id);
  }
  const badges = [];
  if (participant.role === "moderator") badges.push([null, "moderator"]);
  if (participant.hand_raised) badges.push(["hand", "hand raised"]);
  if (participant.audio_muted) badges.push(["mic-off", "microphone off"]);
  if (participant.video_muted) badges.push(["camera-off", "camera off"]);
  for (const [iconName, words] of badges) {
    const badge = document.createElement("span");
    badge.className = "badge badge-icon";
    badge.title = words;
    if (iconName) {
      const spoken = document.createElement("span");
      spoken.className = "visually-hidden";
      spoken.textContent = words;
      badge.append(icon(iconName), spoken);
    } else {
      badge.textContent = words;
    }
    li.append(badge);
  }
  return li;
}

export class Roster {
  constructor({ list, count }) {
    this.list = list;
    this.count = count;
  }

  /** `self` first, then the others in the order they joined. */
  render(self, others) {
    const people = self ? [self, ...others] : [...others];
    this.list.replaceChildren(...people.map((p) => item(p, p === self)));
    this.count.textContent = `(${people.length})`;
  }
}
