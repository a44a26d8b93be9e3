# One target per verb; each covers every module.
.PHONY: test fmt lint fuzz bench

test:
	./scripts/test.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

# go vet and staticcheck (fetched through the module proxy) in every module.
STATICCHECK ?= go run honnef.co/go/tools/cmd/staticcheck@v0.8.2
lint:
	for d in $$(dirname $$(git ls-files go.mod '*/go.mod')); do \
		(cd $$d && go vet ./... && $(STATICCHECK) ./...) || exit 1; \
	done

# Fuzz the parser: FUZZTIME=2m make fuzz
FUZZTIME ?= 1m
fuzz:
	go test ./sse -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)
	go test ./sse -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME)

bench:
	go test ./sse -run '^$$' -bench . -benchmem
