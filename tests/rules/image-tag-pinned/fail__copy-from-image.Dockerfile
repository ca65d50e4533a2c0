# COPY --from names an image too; its finding says COPY --from, not FROM.
# expect: base line=5
FROM nginx:1.27.1-alpine AS base
RUN true
COPY --from=nginx:latest /etc/nginx /etc/nginx
USER 101
