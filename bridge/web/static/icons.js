// Line icons (24×24, drawn with the current text colour), so that nothing depends on the
// system's emoji font. Icons are decoration: the words next to them (visible or
// visually hidden) are what screen readers read.

const SVG = "http://www.w3.org/2000/svg";

const MIC = "M9 6a3 3 0 0 1 6 0v5a3 3 0 0 1-6 0z M5 11a7 7 0 0 0 14 0 M12 18v3 M8 21h8";
const CAMERA = "M4 7h10a1 1 0 0 1 1 1v8a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V8a1 1 0 0 1 1-1z M15 10.5l6-3.5v10l-6-3.5";
const SLASH = " M3 3l18 18";

const PATHS = {
  mic: MIC,
  "mic-off": MIC + SLASH,
  camera: CAMERA,
  "camera-off": CAMERA + SLASH,
  screen: "M4 4h16a1 1 0 0 1 1 1v10a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V5a1 1 0 0 1 1-1z M8 20h8 M12 16v4",
  hand:
    "M7 13V7a1.5 1.5 0 0 1 3 0v5 M10 12V5a1.5 1.5 0 0 1 3 0v7 M13 12V6a1.5 1.5 0 0 1 3 0v7 " +
    "M16 13v-3a1.5 1.5 0 0 1 3 0v4a7 7 0 0 1-7 7h-.5a6 6 0 0 1-5-2.7l-2.3-3.6a1.5 1.5 0 0 1 2.5-1.6L7 15",
  people:
    "M9 11.5a3.5 3.5 0 1 0 0-7 3.5 3.5 0 0 0 0 7z M2.5 20a6.5 6.5 0 0 1 13 0 " +
    "M17 11.5a2.5 2.5 0 1 0 0-5 2.5 2.5 0 0 0 0 5z M17 14a5 5 0 0 1 4.5 5",
  leave: "M10 4H5a1 1 0 0 0-1 1v14a1 1 0 0 0 1 1h5 M15 8l4 4-4 4 M19 12H9",
  close: "M6 6l12 12 M18 6L6 18",
  // A ring with a dot: the usual "recording" sign.
  record: "M12 3a9 9 0 1 0 0 18 9 9 0 0 0 0-18z M12 9.5a2.5 2.5 0 1 0 0 5 2.5 2.5 0 0 0 0-5z",
  // A page with lines of text.
  transcript: "M6 3h9l4 4v14H6z M15 3v4h4 M9 12h7 M9 15h7 M9 18h4",
  // A screen with lines of subtitles.
  captions:
    "M4 5h16a1 1 0 0 1 1 1v12a1 1 0 0 1-1 1H4a1 1 0 0 1-1-1V6a1 1 0 0 1 1-1z " +
    "M7 12h4 M13 12h4 M7 15h6 M15 15h2",
};

/** An `<svg>` for `name`, hidden from screen readers. */
export function icon(name, className = "") {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", `icon-svg ${className}`.trim());
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", PATHS[name] ?? "");
  svg.append(path);
  return svg;
}

/**
 * Fills every `[data-icon]` element under `root` with its icon; a toggle's
 * `data-icon-off` icon is added too, and CSS shows one or the other by `aria-pressed`.
 */
export function placeIcons(root = document) {
  for (const holder of root.querySelectorAll("[data-icon]")) {
    if (holder.childElementCount) continue;
    holder.append(icon(holder.dataset.icon, holder.dataset.iconOff ? "when-on" : ""));
    if (holder.dataset.iconOff) holder.append(icon(holder.dataset.iconOff, "when-off"));
  }
}
