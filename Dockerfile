# writ, for docker-compose.yml: built from this tree, run on a small image
# that has wget for health checks.
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
