package testsrv

import "testing"

// forTest is what every Start helper does with what its New function
// returned: it fails the test with tb.Fatal if the server could not be
// started, and registers its Close with tb.Cleanup, reporting a failed
// Close with tb.Error.
func forTest[S interface{ Close() error }](tb testing.TB, s S, err error) S {
	tb.Helper()
	if err != nil {
		tb.Fatalf("testsrv: %v", err)
	}
	closeAtCleanup(tb, s)
	return s
}

// closeAtCleanup registers s.Close with tb.Cleanup, reporting a failed
// Close with tb.Error.
func closeAtCleanup(tb testing.TB, s interface{ Close() error }) {
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("testsrv: %v", err)
		}
	})
}
