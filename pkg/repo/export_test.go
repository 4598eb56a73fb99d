package repo

// ChunksPerPack counts the chunks the loaded index places in each pack,
// so tests can pick a pack by what it holds.
func (r *Repo) ChunksPerPack() map[ID]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[ID]int{}
	for _, l := range r.index {
		n[l.Pack]++
	}
	return n
}
