package webhook

import (
	"bytes"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/render"
)

// The callback answers encoded once are, byte for byte, what c.JSON writes
// for the same values, and each says its own duplicate and resync.
func TestCallbackAnswersAreWhatCJSONWrites(t *testing.T) {
	for _, dup := range []bool{false, true} {
		for _, resync := range []bool{false, true} {
			w := httptest.NewRecorder()
			if err := (render.JSON{Data: gin.H{"status": "accepted", "duplicate": dup, "resync": resync}}).Render(w); err != nil {
				t.Fatal(err)
			}
			got := callbackAnswers[b2i(dup)][b2i(resync)]
			if !bytes.Equal(got, w.Body.Bytes()) {
				t.Errorf("duplicate %v, resync %v: answer %s, c.JSON writes %s", dup, resync, got, w.Body.Bytes())
			}
			if ct := w.Header().Get("Content-Type"); ct != jsonContentType {
				t.Errorf("c.JSON sets Content-Type %q, the answers %q", ct, jsonContentType)
			}
		}
	}
}
