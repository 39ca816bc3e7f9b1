package dfs

import "time"

// JobState is where a content's post-upload processing stands.
type JobState string

// A job is queued by the commit that creates its content, claimed by one
// worker at a time, and ends done or in error. A commit whose content was
// stored already is a duplicate: it gets no job of its own.
const (
	JobQueued     JobState = "queued"
	JobProcessing JobState = "processing"
	JobDone       JobState = "done"
	JobError      JobState = "error"
)

// Processing is the state of a content's post-upload job and, once done,
// what the processors found (verify: the stored bytes hash to the content's
// name; media: format, duration, tracks, resolution). Results are flat
// "processor.key" names with string values.
type Processing struct {
	Content ContentHash `json:"sha256"`
	// Path is the path whose commit queued the job (the content may have
	// others); empty for jobs queued before it was kept.
	Path     string            `json:"path,omitempty"`
	State    JobState          `json:"state"`
	Worker   string            `json:"worker"`
	Attempts int               `json:"attempts"`
	Error    string            `json:"error"`
	Results  map[string]string `json:"results"`
	Queued   time.Time         `json:"queued,omitzero"`
	Started  time.Time         `json:"started,omitzero"`
	Updated  time.Time         `json:"updated,omitzero"`
}
