# auditd: one process, one writer. Run a single replica (see deploy/).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY auditd ./auditd
COPY migrations ./migrations
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/auditd --create-home auditd
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
WORKDIR /var/lib/auditd
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["auditd"]
CMD ["run", "-c", "/etc/auditd/auditd.toml"]
