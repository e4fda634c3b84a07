"""SDP checks: every bad input is a MediaError with a plain message."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiortc import sdp

from bridge.media import MediaError, MediaSettings
from bridge.media.sdp_rules import check_answer, check_publish_offer, codec_preferences

CHROME_OFFER = (
    (Path(__file__).parent / "data" / "chrome_offer.sdp").read_text().replace("\n", "\r\n")
)
SETTINGS = MediaSettings()


def without(text: str, pattern: str) -> str:
    return "".join(line for line in text.splitlines(True) if not re.search(pattern, line))


def test_browser_offer_is_narrowed_to_opus_and_vp8() -> None:
    checked = check_publish_offer(CHROME_OFFER, SETTINGS)
    audio, video = checked.sections
    assert (audio.mid, audio.kind, audio.sending, audio.ssrc) == ("0", "audio", True, 1093540212)
    assert audio.codec.mimeType == "audio/opus" and audio.codec.payloadType == 111
    assert (video.mid, video.codec.mimeType, video.ssrc) == ("1", "video/VP8", 2716536066)
    parsed = sdp.SessionDescription.parse(checked.sdp)
    assert [c.payloadType for c in parsed.media[0].rtp.codecs] == [111]
    assert [c.payloadType for c in parsed.media[1].rtp.codecs] == [96, 97]  # VP8 + its RTX
    assert "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n" in checked.sdp


ALLOW_PRIVATE = MediaSettings(allow_private_candidates=True)
# The offer's candidate lines (a loopback and an mDNS host candidate, both in section 0).
CANDIDATE_LINES = r"^a=candidate:"


def with_candidates(text: str, *candidates: str, complete: bool = False) -> str:
    """``text`` with its candidates replaced by ``candidates`` (the part after
    ``a=candidate:``) in every section, ending with a=end-of-candidates if ``complete``."""
    lines = "".join(f"a=candidate:{c}\r\n" for c in candidates)
    lines += "a=end-of-candidates\r\n" if complete else ""
    text = without(text, CANDIDATE_LINES)
    return text.replace("a=ice-ufrag:", lines + "a=ice-ufrag:")


def host(address: str, port: int = 50000) -> str:
    return f"1 1 udp 2122260223 {address} {port} typ host generation 0"


def kept_candidates(checked_sdp: str) -> list[str]:
    """The addresses of the candidates left, section by section."""
    return [
        c.ip for m in sdp.SessionDescription.parse(checked_sdp).media for c in m.ice_candidates
    ]


def test_mdns_candidates_are_dropped_and_private_ones_kept_only_when_allowed() -> None:
    checked = check_publish_offer(CHROME_OFFER, ALLOW_PRIVATE)
    assert ".local" not in checked.sdp
    assert "127.0.0.1 46243 typ host" in checked.sdp
    checked = check_publish_offer(CHROME_OFFER, SETTINGS)
    assert "a=candidate" not in checked.sdp
    assert not SETTINGS.allow_private_candidates  # the default


# address -> (kept by default, kept with allow_private_candidates)
CANDIDATE_ADDRESSES = {
    # IPv4
    "8.8.8.8": (True, True),
    "172.32.0.1": (True, True),  # just past 172.16/12
    "100.128.0.1": (True, True),  # just past 100.64/10
    "127.0.0.1": (False, True),
    "127.255.255.254": (False, True),
    "10.1.2.3": (False, True),
    "172.16.0.1": (False, True),
    "172.31.255.254": (False, True),
    "192.168.1.10": (False, True),
    "100.64.0.1": (False, True),  # carrier-grade NAT
    "169.254.10.20": (False, True),
    "0.0.0.0": (False, False),
    "0.1.2.3": (False, False),
    "224.0.0.251": (False, False),  # multicast (mDNS's own group)
    "239.255.255.250": (False, False),
    "240.0.0.1": (False, False),  # reserved
    "255.255.255.255": (False, False),
    "198.18.0.1": (False, False),  # benchmarking
    "203.0.113.7": (False, False),  # documentation
    # IPv6
    "2001:4860:4860::8888": (True, True),
    "2a00:1450:4007:80e::200e": (True, True),
    "::1": (False, True),
    "fd12:3456:789a::1": (False, True),
    "fc00::1": (False, True),
    "fe80::1c2d:3e4f:5a6b:7c8d": (False, True),
    "fec0::1": (False, True),
    "::": (False, False),
    "ff02::1": (False, False),
    "ff0e::1": (False, False),
    "2001:db8::1": (False, False),  # documentation
    "::ffff:8.8.8.8": (False, False),  # IPv4-mapped: never from a browser
    "::ffff:10.0.0.1": (False, False),
    "64:ff9b::a00:1": (False, False),  # NAT64 of 10.0.0.1
    "2002:a00:1::1": (False, True),  # 6to4 of 10.0.0.1
    "2002:808:808::1": (True, True),  # 6to4 of 8.8.8.8
    # Not IP literals: never resolved.
    "6f1b7a3e-6b7e-4a36-9d2e-2f1d8f0c1a2b.local": (False, False),
    "turn.example.com": (False, False),
    "localhost": (False, False),
}


@pytest.mark.parametrize("address", CANDIDATE_ADDRESSES)
def test_candidates_are_kept_only_on_addresses_the_server_may_probe(address: str) -> None:
    by_default, when_allowed = CANDIDATE_ADDRESSES[address]
    offer = with_candidates(CHROME_OFFER, host(address), host("8.8.4.4", 40000))
    answer = offer.replace("a=setup:actpass", "a=setup:active")
    for settings, kept in ((SETTINGS, by_default), (ALLOW_PRIVATE, when_allowed)):
        expected = [address, "8.8.4.4"] if kept else ["8.8.4.4"]
        assert kept_candidates(check_publish_offer(offer, settings).sdp) == expected * 2
        assert kept_candidates(check_answer(answer, settings, 2).sdp) == expected * 2


def test_candidates_the_server_cannot_use_are_dropped() -> None:
    usable = "1 1 udp 2122260223 8.8.4.4 40000 typ host"
    offer = with_candidates(
        CHROME_OFFER,
        usable,
        "2 2 udp 2122260222 8.8.4.5 40001 typ host",  # RTCP is multiplexed
        "3 1 tcp 1518280447 8.8.4.6 9 typ host tcptype active",
        "4 1 udp 1686052607 8.8.4.7 40002 typ srflx raddr 10.0.0.1 rport 40000",
        "5 1 udp 41885439 8.8.4.8 40003 typ relay raddr 8.8.4.7 rport 40002",
        "6 1 udp 1853824767 8.8.4.9 40004 typ prflx",
        "7 1 udp 2122260223 8.8.4.10 0 typ host",
        "8 1 udp 2122260223 8.8.4.11 70000 typ host",
        "9 1 UDP 2122260223 8.8.4.12 40005 typ host",
    )
    kept = kept_candidates(check_publish_offer(offer, ALLOW_PRIVATE).sdp)
    assert kept == ["8.8.4.4", "8.8.4.7", "8.8.4.8", "8.8.4.12"] * 2


def test_a_section_left_without_candidates_waits_for_the_clients_checks() -> None:
    # Nothing usable is left, so no end-of-candidates: aioice would otherwise fail the
    # connection at once instead of learning the client's address from its checks.
    offer = with_candidates(CHROME_OFFER, host("192.168.1.10"), complete=True)
    checked = check_publish_offer(offer, SETTINGS)
    assert "a=candidate" not in checked.sdp
    assert "a=end-of-candidates" not in checked.sdp
    assert len(checked.sections) == 2  # the offer itself is fine
    kept = check_publish_offer(offer, ALLOW_PRIVATE)
    assert kept.sdp.count("a=end-of-candidates") == 2
    assert kept_candidates(kept.sdp) == ["192.168.1.10"] * 2


def test_allow_private_candidates_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="allow_private_candidates"):
        MediaSettings(allow_private_candidates="yes")  # type: ignore[arg-type]


def test_h264_is_chosen_when_vp8_is_missing() -> None:
    offer = without(CHROME_OFFER, r"VP8|:96 |apt=96")
    video = check_publish_offer(offer, SETTINGS).sections[1]
    assert video.codec.mimeType == "video/H264"
    assert video.codec.parameters["packetization-mode"] == "1"
    assert video.codec.payloadType == 102


def test_video_codec_preference_comes_from_settings() -> None:
    settings = MediaSettings(video_codecs=["H264", "VP8"])
    assert check_publish_offer(CHROME_OFFER, settings).sections[1].codec.name == "H264"


def test_codec_preferences_select_exactly_the_publishers_codec() -> None:
    video = check_publish_offer(CHROME_OFFER, SETTINGS).sections[1]
    assert [c.mimeType for c in codec_preferences(video.codec)] == ["video/VP8", "video/rtx"]
    h264 = check_publish_offer(CHROME_OFFER, MediaSettings(video_codecs=["H264"])).sections[1]
    preferences = codec_preferences(h264.codec)
    assert [c.mimeType for c in preferences] == ["video/H264", "video/rtx"]
    assert preferences[0].parameters["profile-level-id"] == "42001f"


def test_missing_direction_means_sendrecv() -> None:
    offer = without(CHROME_OFFER, r"^a=sendonly")
    assert all(s.sending for s in check_publish_offer(offer, SETTINGS).sections)


def test_stopped_section_is_not_sending() -> None:
    offer = CHROME_OFFER.replace("m=video 9 ", "m=video 0 ")
    checked = check_publish_offer(offer, SETTINGS)
    assert not checked.sections[1].sending
    assert "a=inactive" in checked.sdp


def test_stopped_section_may_leave_the_bundle_and_its_transport() -> None:
    audio, video = CHROME_OFFER.split("m=video", 1)
    video = without("m=video" + video, r"ice-|fingerprint|a=setup").replace(
        "m=video 9 ", "m=video 0 "
    )
    offer = audio.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0") + video
    checked = check_publish_offer(offer, SETTINGS)
    parsed = sdp.SessionDescription.parse(checked.sdp)
    assert parsed.media[1].ice is not None
    assert parsed.media[1].ice.usernameFragment == "Qm9i"
    assert parsed.media[1].direction == "inactive"
    unbundled = CHROME_OFFER.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE 0")
    with pytest.raises(MediaError, match="bundle"):
        check_publish_offer(unbundled, SETTINGS)  # a live section must stay bundled


def many_sections(count: int) -> str:
    head, audio = CHROME_OFFER.split("m=audio", 1)
    audio = "m=audio" + audio.split("m=video", 1)[0]
    sections = [audio.replace("a=mid:0", f"a=mid:{i}") for i in range(count)]
    head = head.replace("a=group:BUNDLE 0 1", "a=group:BUNDLE " + " ".join(map(str, range(count))))
    return head + "".join(sections)


BAD_OFFERS = {
    "too big": (CHROME_OFFER + "a=x:" + "y" * 70_000 + "\r\n", "larger than 64 KiB"),
    "garbage": ("hello, world", "not SDP"),
    "binary": (b"v=0\r\n", "must be SDP text"),
    "none": (None, "must be SDP text"),
    "unparsable": ("v=0\r\nm=audio nine RTP\r\n", "could not be parsed"),
    "broken attribute": (
        CHROME_OFFER.replace("a=fingerprint:sha-256 ", "a=fingerprint:"),
        "parsed",
    ),
    "no media": ("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no media sections"),
    "no fingerprint": (without(CHROME_OFFER, "fingerprint"), "no usable DTLS fingerprint"),
    "no setup": (without(CHROME_OFFER, "a=setup"), "no usable DTLS fingerprint"),
    "weak fingerprint": (CHROME_OFFER.replace("sha-256", "md5"), "no usable DTLS fingerprint"),
    "too many sections": (many_sections(9), "at most 8 are allowed"),
    "unsupported codecs": (
        without(CHROME_OFFER, r"VP8|H264|:96 |apt=96|:10[2-9] |:12[57] |apt=10|apt=127"),
        "no supported codec (offered: AV1, VP9, flexfec-03, red, rtx, ulpfec",
    ),
    "unsupported audio": (without(CHROME_OFFER, r"opus|:111 "), "audio section '0' offers no"),
    "no bundle": (without(CHROME_OFFER, "a=group:BUNDLE"), "must bundle"),
    "duplicate mid": (CHROME_OFFER.replace("a=mid:1", "a=mid:0"), "its own a=mid"),
    "no ice": (without(CHROME_OFFER, "ice-pwd"), "no ICE credentials"),
    "no rtcp-mux": (without(CHROME_OFFER, "rtcp-mux"), "a=rtcp-mux"),
    "data channel": (
        CHROME_OFFER.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96 97 102",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel 96 97 102",
        ),
        "Data channels are not supported here",
    ),
}


@pytest.mark.parametrize("name", BAD_OFFERS)
def test_bad_offer_is_refused_plainly(name: str) -> None:
    text, message = BAD_OFFERS[name]
    with pytest.raises(MediaError, match=re.escape(message)):
        check_publish_offer(text, SETTINGS)


def test_answer_must_match_the_offer_and_take_a_dtls_role() -> None:
    answer = CHROME_OFFER.replace("a=setup:actpass", "a=setup:active")
    assert len(check_answer(answer, SETTINGS, offered_sections=2).sections) == 2
    with pytest.raises(MediaError, match="2 media sections but the offer had 3"):
        check_answer(answer, SETTINGS, offered_sections=3)
    with pytest.raises(MediaError, match="active or passive"):
        check_answer(CHROME_OFFER, SETTINGS, offered_sections=2)
    with pytest.raises(MediaError, match="not SDP"):
        check_answer("nonsense", SETTINGS, offered_sections=2)


def test_answers_may_grow_with_the_number_of_sections() -> None:
    answer = CHROME_OFFER.replace("a=setup:actpass", "a=setup:active")
    padded = answer + "a=x:" + "y" * 62_000 + "\r\n"
    assert check_answer(padded, SETTINGS, offered_sections=2)  # 64 KiB + 2 KiB per section
    padded += "a=x:" + "y" * 6000 + "\r\n"
    with pytest.raises(MediaError, match="larger than"):
        check_answer(padded, SETTINGS, offered_sections=2)
    settings = MediaSettings(max_sdp_bytes=1024)
    with pytest.raises(MediaError, match="larger than 5 KiB"):
        check_answer(padded, settings, offered_sections=2)
