#!/usr/bin/env python3
"""A WebRTC peer (aiortc) for xcord's voice tests, driven over stdin/stdout.

One JSON object per line in each direction. The test does all signaling (REST and the
gateway); this process only holds the peer connection:

  {"cmd": "offer", "tone": true}      -> {"sdp": "<offer>"}  (tone: send a 440 Hz sine)
  {"cmd": "answer", "sdp": "..."}     -> {"ok": true}        (the server's answer to our offer)
  {"cmd": "server_offer", "sdp": ...} -> {"sdp": "<answer>"} (VOICE_SDP)
  {"cmd": "listen", "ms": 1500}       -> {"frames": n, "peak_dbfs": x, "tracks": k, "msids": [...],
                                          "by_msid": {msid: {"kind", "frames", "peak_dbfs"}}}

`frames` and `peak_dbfs` are of audio; `by_msid` has each received track (audio and video,
decoded) under the msid the server's description gives its m-line.
  {"cmd": "close"}                    -> {"ok": true}, then exit

Media stays on loopback: aioice leaves 127.0.0.1 out of its host candidates, so host
address discovery is replaced to offer 127.0.0.1 only.
"""

import array
import asyncio
import fractions
import json
import math
import sys
import time

import aioice.ice

aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError  # noqa: E402
from av import AudioFrame  # noqa: E402

RATE = 48000
PTIME = 0.02


class Tone(AudioStreamTrack):
    """A 440 Hz sine at about -12 dBFS, in 20 ms frames."""

    def __init__(self):
        super().__init__()
        self._t = None
        self._n = 0

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        samples = int(RATE * PTIME)
        if self._t is None:
            self._t = time.time()
        else:
            wait = self._t + (self._n + samples) / RATE - time.time()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = AudioFrame(format="s16", layout="mono", samples=samples)
        pcm = array.array(
            "h",
            (int(8000 * math.sin(2 * math.pi * 440 * (self._n + i) / RATE)) for i in range(samples)),
        )
        frame.planes[0].update(pcm.tobytes())
        frame.pts = self._n
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += samples
        return frame


class Received:
    """What one received track decoded during a listening window."""

    def __init__(self, kind):
        self.kind = kind
        self.frames = 0
        self.peak = 0.0

    def report(self):
        return {
            "kind": self.kind,
            "frames": self.frames,
            "peak_dbfs": dbfs(self.peak),
        }


def dbfs(rms):
    return 20 * math.log10(rms) if rms > 0 else -200.0


def msid_by_mid(sdp):
    """`a=msid` of each m-line of a description, by `a=mid`."""
    out = {}
    for section in sdp.split("\nm=")[1:]:
        mid = msid = None
        for line in section.splitlines():
            if line.startswith("a=mid:"):
                mid = line[6:].strip()
            elif line.startswith("a=msid:"):
                msid = line[7:].strip()
        if mid is not None and msid is not None:
            out[mid] = msid
    return out


class Peer:
    def __init__(self):
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.frames = 0
        self.peak = 0.0
        self.tracks = 0
        self.received = {}
        self.pc.on("track", self.on_track)

    def on_track(self, track):
        if track.kind == "audio":
            self.tracks += 1
        self.received[track] = Received(track.kind)
        asyncio.ensure_future(self.consume(track))

    async def consume(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            got = self.received[track]
            if track.kind == "video":
                got.frames += 1
                continue
            pcm = array.array("h", bytes(frame.planes[0]))
            if not pcm:
                continue
            rms = math.sqrt(sum(s * s for s in pcm) / len(pcm)) / 32768.0
            self.frames += 1
            self.peak = max(self.peak, rms)
            got.frames += 1
            got.peak = max(got.peak, rms)

    def by_msid(self):
        sdp = self.pc.remoteDescription.sdp if self.pc.remoteDescription else ""
        msids = msid_by_mid(sdp)
        out = {}
        for t in self.pc.getTransceivers():
            got = self.received.get(t.receiver.track)
            msid = msids.get(t.mid)
            if got is not None and msid is not None:
                out[msid] = got.report()
        return out

    async def handle(self, msg):
        cmd = msg["cmd"]
        if cmd == "offer":
            if msg.get("tone"):
                self.pc.addTrack(Tone())
            else:
                self.pc.addTransceiver("audio", direction="recvonly")
            await self.pc.setLocalDescription(await self.pc.createOffer())
            return {"sdp": self.pc.localDescription.sdp}
        if cmd == "answer":
            await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
            return {"ok": True}
        if cmd == "server_offer":
            await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            await self.pc.setLocalDescription(await self.pc.createAnswer())
            return {"sdp": self.pc.localDescription.sdp}
        if cmd == "listen":
            self.frames = 0
            self.peak = 0.0
            for track in self.received:
                self.received[track] = Received(track.kind)
            await asyncio.sleep(msg.get("ms", 1000) / 1000)
            peak_dbfs = dbfs(self.peak)
            msids = [
                line.split(":", 1)[1]
                for line in (self.pc.remoteDescription.sdp if self.pc.remoteDescription else "").splitlines()
                if line.startswith("a=msid:")
            ]
            return {
                "frames": self.frames,
                "peak_dbfs": peak_dbfs,
                "tracks": self.tracks,
                "msids": msids,
                "by_msid": self.by_msid(),
            }
        if cmd == "close":
            await self.pc.close()
            return {"ok": True}
        return {"error": f"unknown command {cmd}"}


async def main():
    peer = Peer()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            break
        msg = json.loads(line)
        try:
            reply = await peer.handle(msg)
        except Exception as e:  # reported to the test, which fails with it
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)
        if msg.get("cmd") == "close":
            break


asyncio.run(main())
