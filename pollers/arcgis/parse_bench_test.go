package arcgis

import (
	"testing"
	"time"
)

// BenchmarkParseJob measures parseJob per flavour: the simulator's
// executing Mission job (what every steady poll of the benchmark reads), a
// classic admin job and a GP job with progress.
func BenchmarkParseJob(b *testing.B) {
	for _, c := range []struct {
		name   string
		flavor Flavor
		body   string
	}{
		{"mission", FlavorMission, `{"jobId":"j1mission","messages":["Created tracks layers for location awareness."],"startTime":1795469816305,"endTime":0,"type":"addMission","status":"EXECUTING","username":"admin","customAttributes":{"stepsCompleted":1,"isCancelled":false,"missionId":"ef853450db00048cee7222c9dea1a2c9","messageCodes":[1500],"totalSteps":5}}`},
		{"enterprise", FlavorEnterprise, `{"jobid":"j1","status":"COMPLETED","totalsteps":3,"currentstep":3,"stepInfo":[{"step":"one","status":"COMPLETED"}],"operationResponse":{"status":"success","messages":[]}}`},
		{"gp", FlavorGeoprocessing, `{"jobId":"j1","jobStatus":"esriJobExecuting","progress":{"type":"default","message":"Executing Buffer","percentage":45},"messages":[{"type":"esriJobMessageTypeInformative","description":"Executing..."}]}`},
	} {
		b.Run(c.name, func(b *testing.B) {
			body := []byte(c.body)
			at := time.Unix(0, 0)
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, _, err := parseJob(c.flavor, testJob, body, at, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
