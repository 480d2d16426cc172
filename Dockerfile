# The image of the Writ replicas in docker-compose.yml: writ built from this
# tree (static, no cgo), on a small Alpine image that has wget for the health
# checks. It holds no setup and no secret: compose mounts deploy/writ (made by
# 'writ init') read-only at /writ and runs 'writ serve --dir /writ --server …'.
#
# Who the process runs as: compose runs it as the owner of deploy/writ
# (user: WRIT_UID:WRIT_GID), whose keys are mode 0600, so that it reads them
# without their being opened to anyone else. Run without a user of its own
# (docker run), it is the unprivileged user writ, uid 10001, which owns
# nothing: give it a setup that user can read.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /writ ./cmd/writ

FROM alpine:3.22
RUN adduser -D -u 10001 writ
COPY --from=build /writ /usr/local/bin/writ
USER writ
ENTRYPOINT ["writ"]
