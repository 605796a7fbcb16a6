package arcgissim

import (
	"strings"
	"time"
)

// The payloads, fields in the order of the vendor's documentation.

type missionJob struct {
	JobID            string       `json:"jobId"`
	Messages         []string     `json:"messages"`
	StartTime        int64        `json:"startTime"`
	EndTime          int64        `json:"endTime"`
	Type             string       `json:"type"`
	Status           string       `json:"status"`
	Username         string       `json:"username"`
	CustomAttributes missionAttrs `json:"customAttributes"`
}

type missionAttrs struct {
	StepsCompleted int    `json:"stepsCompleted"`
	IsCancelled    bool   `json:"isCancelled"`
	MissionID      string `json:"missionId"`
	MessageCodes   []int  `json:"messageCodes"`
	TotalSteps     int    `json:"totalSteps"`
}

type adminJob struct {
	JobID             string             `json:"jobid"`
	Status            string             `json:"status"`
	TotalSteps        int                `json:"totalsteps"`
	CurrentStep       int                `json:"currentstep"`
	StepInfo          []string           `json:"stepInfo"`
	OperationResponse *operationResponse `json:"operationResponse,omitempty"`
}

// operationResponse is the administrator API's standard answer, also used
// as an Enterprise Administrator API job's result (an assumption: the
// documented result of a completed job is the operation's own answer).
type operationResponse struct {
	Status   string   `json:"status"`
	Messages []string `json:"messages,omitempty"`
}

type enterpriseJob struct {
	UpdatedTime  int64              `json:"updatedtime"`
	JobID        string             `json:"jobid"`
	EndTime      int64              `json:"endtime"`
	StartTime    int64              `json:"starttime"`
	OperationURI string             `json:"operationURI"`
	Status       string             `json:"status"`
	Username     string             `json:"username"`
	Result       *operationResponse `json:"result,omitempty"`
}

type gpJob struct {
	JobID     string              `json:"jobId"`
	JobStatus string              `json:"jobStatus"`
	Progress  *gpProgress         `json:"progress,omitempty"`
	Results   map[string]paramURL `json:"results"`
	Inputs    map[string]paramURL `json:"inputs"`
	Messages  []gpMessage         `json:"messages"`
}

type gpProgress struct {
	Type       string   `json:"type"`
	Message    string   `json:"message"`
	Percentage *float64 `json:"percentage,omitempty"`
}

type paramURL struct {
	ParamURL string `json:"paramUrl"`
}

type gpMessage struct {
	Type        string `json:"type"`
	Description string `json:"description"`
}

// terminal reports whether a status ends a job, in either enum.
func terminal(status string) bool {
	switch strings.ToUpper(status) {
	case "COMPLETED", "FAILED", "CANCELLED", "ESRIJOBSUCCEEDED", "ESRIJOBFAILED", "ESRIJOBTIMEDOUT",
		"ESRIJOBCANCELLED", "ESRIJOBDELETED", "EXPECTEDFAILURE":
		return true
	}
	return false
}

func millis(t time.Time) int64 { return t.UnixMilli() }

// render builds the job's payload at now; the caller holds the lock.
func render(j *job, now time.Time) any {
	past := j.timeline.Until(now)
	cur := past[len(past)-1]
	step := cur.Step
	var messages []string
	var endTime int64
	for _, sg := range past {
		if m := sg.Step.Message; m != "" {
			messages = append(messages, m)
		}
		if endTime == 0 && terminal(sg.Step.Status) {
			endTime = millis(sg.Start)
		}
	}
	if messages == nil {
		messages = []string{}
	}
	var op *operationResponse
	if step.Operation != "" {
		op = &operationResponse{Status: step.Operation, Messages: step.OperationMessages}
	}
	switch j.spec.Kind {
	case KindMission:
		codes := make([]int, len(messages))
		for i := range codes {
			codes[i] = 1500 + i
		}
		return missionJob{
			JobID: j.spec.ID, Messages: messages, StartTime: millis(j.created), EndTime: endTime,
			Type: j.spec.Type, Status: step.Status, Username: j.spec.Username,
			CustomAttributes: missionAttrs{
				StepsCompleted: step.Done, IsCancelled: step.Cancelled, MissionID: j.spec.MissionID,
				MessageCodes: codes, TotalSteps: j.spec.TotalSteps,
			},
		}
	case KindAdmin:
		return adminJob{
			JobID: j.spec.ID, Status: step.Status, TotalSteps: j.spec.TotalSteps, CurrentStep: step.Done,
			StepInfo: messages, OperationResponse: op,
		}
	case KindEnterprise:
		return enterpriseJob{
			UpdatedTime: millis(cur.Start), JobID: j.spec.ID, EndTime: endTime, StartTime: millis(j.created),
			OperationURI: j.spec.OperationURI, Status: step.Status, Username: j.spec.Username, Result: op,
		}
	}
	out := gpJob{
		JobID: j.spec.ID, JobStatus: step.Status,
		Results:  map[string]paramURL{},
		Inputs:   map[string]paramURL{"Input_Features": {"inputs/Input_Features"}},
		Messages: []gpMessage{},
	}
	for _, sg := range past {
		st := sg.Step
		if st.Message == "" {
			continue
		}
		typ := "esriJobMessageTypeInformative"
		switch strings.ToLower(st.Status) {
		case "esrijobfailed", "esrijobtimedout", "expectedfailure":
			typ = "esriJobMessageTypeError"
		}
		out.Messages = append(out.Messages, gpMessage{typ, st.Message})
	}
	// Progress exists only while the job executes (10.8.1 and later).
	if gpProgressShown(KindGP, step) {
		p := &gpProgress{Type: "default", Message: step.Message}
		if step.Percent != nil {
			v := *step.Percent
			p.Type, p.Percentage = "step", &v
		}
		out.Progress = p
	}
	if strings.EqualFold(step.Status, "esriJobSucceeded") {
		out.Results["Output_Feature_Class"] = paramURL{"results/Output_Feature_Class"}
	}
	return out
}
