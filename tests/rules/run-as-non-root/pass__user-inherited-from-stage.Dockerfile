FROM debian:12.7-slim AS base
RUN useradd -u 1001 app
USER 1001
FROM base AS final
CMD ["true"]
