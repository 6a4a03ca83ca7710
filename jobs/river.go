package jobs

// River queries of the job queue, outside the worker.

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"
)

// anyPending reports whether a transcode job waits or runs.
func anyPending[TTx any](ctx context.Context, c *river.Client[TTx]) (bool, error) {
	res, err := c.JobList(ctx, river.NewJobListParams().Kinds(TranscodeArgs{}.Kind()).
		States(rivertype.JobStateAvailable, rivertype.JobStateRunning, rivertype.JobStateRetryable,
			rivertype.JobStateScheduled, rivertype.JobStatePending).First(1))
	if err != nil {
		return false, fmt.Errorf("job queue: %w", err)
	}
	return len(res.Jobs) > 0, nil
}

func migrate[TTx any](ctx context.Context, d riverdriver.Driver[TTx]) error {
	m, err := rivermigrate.New(d, nil)
	if err != nil {
		return err
	}
	if _, err := m.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("river migrations: %w", err)
	}
	return nil
}

// listJobs returns the transcode jobs of one content item that have not
// finished, newest first. The list is by kind and state, filtered here:
// a content item has a handful of jobs at most.
func listJobs[TTx any](ctx context.Context, c *river.Client[TTx], contentID string) ([]*rivertype.JobRow, error) {
	params := river.NewJobListParams().Kinds(TranscodeArgs{}.Kind()).
		States(rivertype.JobStateAvailable, rivertype.JobStateRunning, rivertype.JobStateRetryable,
			rivertype.JobStateScheduled, rivertype.JobStatePending).
		OrderBy(river.JobListOrderByID, river.SortOrderDesc).First(1000)
	res, err := c.JobList(ctx, params)
	if err != nil {
		return nil, err
	}
	var out []*rivertype.JobRow
	for _, j := range res.Jobs {
		var a TranscodeArgs
		if json.Unmarshal(j.EncodedArgs, &a) == nil && a.ContentID == contentID {
			out = append(out, j)
		}
	}
	return out, nil
}
