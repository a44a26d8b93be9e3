# One target per verb; each covers every module.
.PHONY: test fmt fuzz bench

test:
	./scripts/test.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

# Fuzz the parser: FUZZTIME=2m make fuzz
FUZZTIME ?= 1m
fuzz:
	go test ./sse -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)
	go test ./sse -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)

bench:
	go test ./sse -run '^$$' -bench . -benchmem
