package klarnasim

import "sort"

// HPPSessionIDs returns the ids of the HPP sessions created over a KP
// session, whatever their status, sorted. Tests use it to find sessions a
// caller never learnt of (an answer lost after the effect).
func (s *Sim) HPPSessionIDs(kpSessionID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, h := range s.hpp {
		if h.kpID == kpSessionID {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
