package huawei

import (
	"context"
	"fmt"

	"github.com/jobbridge/jobbridge/bridge"
	"github.com/jobbridge/jobbridge/bridge/config"
	"github.com/jobbridge/jobbridge/pollers/pollkit"
)

// ConfigOptions are the Huawei-specific keys of an instance's options.
type ConfigOptions struct {
	// IAMURL is the IAM endpoint; default https://iam.<region>.myhuaweicloud.com.
	IAMURL string `yaml:"iamURL"`
	// ProjectID is the project in the job URL and the token's scope.
	ProjectID string `yaml:"projectID"`
	// Region is the region name, e.g. ap-southeast-1.
	Region string `yaml:"region"`
	// APIVersion is v2 (default) or v3.
	APIVersion string `yaml:"apiVersion"`
	// TaskPageSize is the limit of one task page (default 100, at most 1000).
	TaskPageSize int `yaml:"taskPageSize"`
	// MaxTaskPages bounds the task pages read per poll (default 20).
	MaxTaskPages int `yaml:"maxTaskPages"`
}

// FromConfig builds a ServiceStage instance from configuration. auth takes
// username, password and domain (the account name); auth.project is the
// project name that scopes the token, or its id when it is 32 hexadecimal
// characters and options.projectID is not set.
func FromConfig(_ context.Context, inst config.Instance, deps pollkit.Deps) (bridge.Instance, error) {
	var co ConfigOptions
	if err := pollkit.DecodeOptions(inst, &co); err != nil {
		return bridge.Instance{}, err
	}
	a := inst.Auth
	switch {
	case a.AccessKey != "" || !a.SecretKey.IsZero():
		return bridge.Instance{}, fmt.Errorf("instance %s (huawei): AK/SK request signing is not supported yet; remove auth.accessKey and auth.secretKey and give auth.username, auth.password and auth.domain of an IAM user", inst.Name)
	case !a.Token.IsZero():
		return bridge.Instance{}, fmt.Errorf("instance %s (huawei): a fixed auth.token is not supported (IAM tokens expire after 24 h); give auth.username, auth.password and auth.domain instead", inst.Name)
	}
	pw, err := pollkit.ResolveSecret(inst, "password", a.Password, deps)
	if err != nil {
		return bridge.Instance{}, err
	}
	projectID, projectName := co.ProjectID, a.Project
	if projectID == "" && isProjectID(projectName) {
		projectID, projectName = projectName, ""
	}
	p, err := New(Options{
		Instance: inst.Name, BaseURL: inst.URL, IAMURL: co.IAMURL, Region: co.Region,
		Username: a.Username, Password: pw, Domain: a.Domain,
		ProjectID: projectID, ProjectName: projectName,
		APIVersion: APIVersion(co.APIVersion), TaskPageSize: co.TaskPageSize, MaxTaskPages: co.MaxTaskPages,
		HTTP: pollkit.ClientOptionsWith(inst, deps), Logger: deps.Logger,
	})
	if err != nil {
		return bridge.Instance{}, fmt.Errorf("instance %s: %w", inst.Name, err)
	}
	return pollkit.InstanceFor(inst, p), nil
}

// isProjectID recognises a Huawei project id: 32 lower-case hex digits.
func isProjectID(s string) bool {
	if len(s) != 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
