# No USER anywhere, and the chain starts FROM scratch (an empty image): root, known.
# expect: final line=5
FROM scratch AS base
COPY app /app
FROM base AS final
