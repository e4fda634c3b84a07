"""Random mutations of a real Chromium offer (property-based, Hypothesis): the edge
check either accepts the offer or refuses it with a MediaError in words; nothing else
escapes, whatever the lines say. The real-peer corpus of bad SDP (garbage, no
fingerprint, thousands of m-lines, oversized, wrong codecs) is in test_router.py and
tests/integration/test_signaling.py."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.media import MediaError, MediaSettings
from bridge.media.sdp_rules import check_answer, check_publish_offer

OFFER_LINES = (Path(__file__).parent / "data" / "chrome_offer.sdp").read_text().strip().split("\n")
SETTINGS = MediaSettings(allow_private_candidates=True)

# Lines that look like SDP but say odd things.
odd_lines = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda kind, value: f"{kind}={value}",
        st.sampled_from("vosctmab"),
        st.text(max_size=60),
    ),
    st.builds(
        lambda attribute, value: f"a={attribute}:{value}",
        st.sampled_from(
            [
                "rtpmap",
                "fmtp",
                "mid",
                "msid",
                "ssrc",
                "ssrc-group",
                "candidate",
                "fingerprint",
                "setup",
                "extmap",
                "rtcp-fb",
                "rid",
                "simulcast",
                "group",
                "ice-ufrag",
            ]
        ),
        st.text(max_size=60),
    ),
    st.builds(
        lambda kind, port, proto, formats: f"m={kind} {port} {proto} {formats}",
        st.sampled_from(["audio", "video", "application", "text", ""]),
        st.integers(min_value=-5, max_value=70000),
        st.sampled_from(["UDP/TLS/RTP/SAVPF", "RTP/AVP", "UDP/DTLS/SCTP", "x"]),
        st.text(alphabet="0123456789 ", max_size=20),
    ),
)


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        action = draw(st.sampled_from(["delete", "duplicate", "replace", "insert", "cut"]))
        index = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
        if not lines:
            break
        if action == "delete":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "replace":
            lines[index] = draw(odd_lines)
        elif action == "insert":
            lines.insert(index, draw(odd_lines))
        else:
            lines[index] = lines[index][: draw(st.integers(min_value=0, max_value=40))]
    return "\r\n".join(lines) + "\r\n"


@settings(max_examples=300, deadline=None)
@given(offer=mutated_offers())
def test_mutated_offers_are_accepted_or_refused_in_words(offer: str) -> None:
    try:
        checked = check_publish_offer(offer, SETTINGS)
    except MediaError as refusal:
        assert str(refusal) and refusal.code == "bad_sdp"
    else:
        assert checked.sdp.startswith("v=0")


@settings(max_examples=150, deadline=None)
@given(answer=mutated_offers(), sections=st.integers(min_value=0, max_value=4))
def test_mutated_answers_are_accepted_or_refused_in_words(answer: str, sections: int) -> None:
    try:
        check_answer(answer, SETTINGS, sections)
    except MediaError as refusal:
        assert str(refusal)
