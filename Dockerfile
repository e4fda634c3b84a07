# Visio Bridge: docker run -v /srv/visio:/data -p 29351:29351 visio-bridge
# First run writes /data/config.yaml and stops; edit it. The second writes
# /data/registration.yaml for the homeserver and stops. From then on the bridge runs.
# Transcription needs the optional extra: build with --build-arg EXTRAS=transcription,
# and mount a model folder (transcription.model_dir); nothing is downloaded at run time.
FROM python:3.11-slim-bookworm

ARG EXTRAS=""

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 VISIO_DATA=/data

WORKDIR /opt/visio-bridge
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}" \
    && useradd --system --uid 1337 --home-dir /data --shell /usr/sbin/nologin visio \
    && mkdir -p /data && chown visio:visio /data

USER visio
VOLUME /data
# Appservice listener (for the homeserver only) and public web listener.
EXPOSE 29350 29351
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:29351/health')"
ENTRYPOINT ["python", "-m", "bridge.docker"]
