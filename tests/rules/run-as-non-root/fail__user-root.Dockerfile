# expect: final line=5
FROM debian:12.7-slim AS final
RUN useradd -u 1001 app
USER 1001
USER root
